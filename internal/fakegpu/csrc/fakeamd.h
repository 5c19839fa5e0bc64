/*
 * fakeamd.h - what the fake HIP runtime and the fake ROCm SMI add to the
 * simulated node of fakenode.h: the identity of an AMD GPU. Both libraries
 * include it after fakenode.h. Extra per-GPU files:
 *
 *   gpu<i>/uuid               "GPU-<16 hex digits>": the card's 64-bit
 *                             unique id, as rocminfo prints it; "none" for
 *                             a card without one. Default
 *                             GPU-5c1b4d702f8d00<ii>.
 *   gpu<i>/pci                PCI bus id "dddd:bb:dd.f"; default
 *                             0000:<0x03+4i>:00.0
 *   gpu<i>/compute_partition  "SPX", "CPX", ...: the compute partition
 *                             ROCm SMI reports; none by default
 *   $FAKEGPU_DIR/hip_init_error       result code hipInit returns
 *   $FAKEGPU_DIR/rocm_smi_init_error  status code rsmi_init returns
 *   $FAKEGPU_DIR/amd_smi_init_error   status code amdsmi_init returns
 */
#ifndef FAKEGPU_FAKEAMD_H
#define FAKEGPU_FAKEAMD_H

#include <strings.h>

#include "fakenode.h"

#define FA_DEFAULT_UNIQUE_ID 0x5c1b4d702f8d0000ULL

/*
 * fa_unique_id stores GPU gpu's 64-bit unique id in *id and returns 1, or
 * returns 0 for a card without one.
 */
static inline int fa_unique_id(int gpu, unsigned long long *id)
{
	char buf[128], *end;

	if (fn_gpu_read(gpu, "uuid", buf, sizeof buf) != 0 || buf[0] == '\0') {
		*id = FA_DEFAULT_UNIQUE_ID + (unsigned)(gpu & 0xff);
		return 1;
	}
	if (strncmp(buf, "GPU-", 4) != 0 || strlen(buf) != 20)
		return 0;
	errno = 0;
	*id = strtoull(buf + 4, &end, 16);
	return errno == 0 && *end == '\0';
}

/* fa_pci stores GPU gpu's PCI location; it returns 0, or -1 if malformed. */
static inline int fa_pci(int gpu, unsigned *domain, unsigned *bus, unsigned *dev, unsigned *fn)
{
	char buf[64];

	if (fn_gpu_read(gpu, "pci", buf, sizeof buf) != 0 || buf[0] == '\0') {
		*domain = 0;
		*bus = (0x03 + 4 * (unsigned)gpu) & 0xff;
		*dev = 0;
		*fn = 0;
		return 0;
	}
	if (sscanf(buf, "%x:%x:%x.%x", domain, bus, dev, fn) != 4)
		return -1;
	return 0;
}

/*
 * fa_visible fills phys_of (FN_MAX_GPUS entries) with the physical GPUs a
 * HIP process sees and returns their number. ROCR_VISIBLE_DEVICES (indices
 * or "GPU-" UUIDs) selects among the node's GPUs; HIP_VISIBLE_DEVICES, or
 * CUDA_VISIBLE_DEVICES when it is unset, or GPU_DEVICE_ORDINAL when both
 * are, then selects by index among those. Each list ends at its first
 * invalid or repeated entry (the rule hip.Visible documents).
 */
static inline int fa_visible_filter(const char *env, int *list, int n, int uuids)
{
	char buf[4096], uuid[128], *tok, *save, *end;
	int out[FN_MAX_GPUS], k = 0, i, j, idx;
	unsigned long long v;

	snprintf(buf, sizeof buf, "%s", env);
	for (tok = buf; tok != NULL && k < FN_MAX_GPUS; tok = save) {
		save = strchr(tok, ',');
		if (save != NULL)
			*save++ = '\0';
		while (*tok == ' ')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && end[-1] == ' ')
			*--end = '\0';
		idx = -1;
		if (fn_parse_u64(tok, &v) == 0) {
			if (v < (unsigned long long)n)
				idx = (int)v;
		} else if (uuids && strncasecmp(tok, "GPU-", 4) == 0) {
			for (i = 0; i < n; i++) {
				unsigned long long id;

				if (!fa_unique_id(list[i], &id))
					continue;
				snprintf(uuid, sizeof uuid, "GPU-%016llx", id);
				if (strcasecmp(uuid, tok) == 0)
					idx = i;
			}
		}
		if (idx < 0)
			break;
		for (j = 0; j < k; j++)
			if (out[j] == list[idx])
				idx = -1;
		if (idx < 0)
			break;
		out[k++] = list[idx];
	}
	memcpy(list, out, (size_t)k * sizeof out[0]);
	return k;
}

static inline int fa_visible(int *phys_of)
{
	const char *rocr = getenv("ROCR_VISIBLE_DEVICES");
	const char *hip = getenv("HIP_VISIBLE_DEVICES");
	int i, n = fn_device_count();

	for (i = 0; i < n; i++)
		phys_of[i] = i;
	if (rocr != NULL)
		n = fa_visible_filter(rocr, phys_of, n, 1);
	if (hip == NULL)
		hip = getenv("CUDA_VISIBLE_DEVICES");
	if (hip == NULL)
		hip = getenv("GPU_DEVICE_ORDINAL");
	if (hip != NULL)
		n = fa_visible_filter(hip, phys_of, n, 0);
	return n;
}

#endif /* FAKEGPU_FAKEAMD_H */

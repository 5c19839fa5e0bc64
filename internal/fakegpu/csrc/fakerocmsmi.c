/*
 * fakerocmsmi.c - a fake ROCm SMI library (librocm_smi64) for tests.
 *
 * It implements the part of ROCm SMI keepgpu reads, against the simulated
 * node of fakenode.h and fakeamd.h: every GPU of the node (ROCm SMI, like
 * the real one reading sysfs, ignores ROCR_VISIBLE_DEVICES and friends),
 * the memory and activity every live process publishes (the fake HIP
 * runtime's, or a test's foreign process), busy percent, power, identity.
 *
 * $FAKEGPU_DIR/rocm_smi_grow, when it holds a number N, makes the process
 * list grow by N short-lived processes at every rsmi_compute_process_info_get
 * call (processes that are gone by the next call), to test callers against
 * a count that changes between the two calls of the API; "xN" makes the
 * number of such processes N times 2 to the number of calls, a list that
 * outgrows any buffer.
 *
 * All declarations below are our own; only the ABI (function signatures,
 * struct layouts and numeric values) follows AMD's public rocm_smi.h.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdint.h>

#include "fakenode.h"
#include "fakeamd.h"

typedef int rsmi_status_t;

enum {
	RSMI_STATUS_SUCCESS = 0,
	RSMI_STATUS_INVALID_ARGS = 1,
	RSMI_STATUS_NOT_SUPPORTED = 2,
	RSMI_STATUS_INPUT_OUT_OF_BOUNDS = 7,
	RSMI_STATUS_INIT_ERROR = 8,
	RSMI_STATUS_NOT_FOUND = 10,
	RSMI_STATUS_INSUFFICIENT_SIZE = 11,
};

enum { RSMI_MEM_TYPE_VRAM = 0, RSMI_MEM_TYPE_VIS_VRAM = 1, RSMI_MEM_TYPE_GTT = 2 };

/* rsmi_process_info_t, as rocm_smi.h declares it since ROCm 4. */
typedef struct {
	uint32_t process_id;
	uint32_t pasid;
	uint64_t vram_usage;
	uint64_t sdma_usage;
	uint32_t cu_occupancy;
} rsmi_process_info_t;

/* Pids of the short-lived processes rocm_smi_grow adds. */
#define FS_PHANTOM_PID 4000000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int refs;
static unsigned long long list_calls;

static rsmi_status_t leave(rsmi_status_t rc)
{
	pthread_mutex_unlock(&mu);
	return rc;
}

/* enter_dev takes the lock and checks init and the device index. */
static rsmi_status_t enter_dev(uint32_t dv)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return RSMI_STATUS_INIT_ERROR;
	if (dv >= (uint32_t)fn_device_count())
		return RSMI_STATUS_INVALID_ARGS;
	return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_init(uint64_t flags)
{
	int code;

	(void)flags;
	pthread_mutex_lock(&mu);
	if (fn_init_error("rocm_smi_init_error", &code) && code != RSMI_STATUS_SUCCESS) {
		/* What ROCm 5.2 prints when there is no amdgpu driver. */
		fputs("Failed to open drm root directory /sys/class/drm.: No such file or directory\n", stderr);
		fputs("Exception caught: rsmi_init.\n", stderr);
		return leave(code);
	}
	refs++;
	return leave(RSMI_STATUS_SUCCESS);
}

rsmi_status_t rsmi_shut_down(void)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(RSMI_STATUS_INIT_ERROR);
	refs--;
	return leave(RSMI_STATUS_SUCCESS);
}

static const struct {
	rsmi_status_t code;
	const char *text;
} statuses[] = {
	{RSMI_STATUS_SUCCESS, "RSMI_STATUS_SUCCESS: The function has been executed successfully."},
	{RSMI_STATUS_INVALID_ARGS, "RSMI_STATUS_INVALID_ARGS: The provided arguments do not meet the preconditions required for input."},
	{RSMI_STATUS_NOT_SUPPORTED, "RSMI_STATUS_NOT_SUPPORTED: The requested information or action is not available for the given input, on the given system"},
	{RSMI_STATUS_INPUT_OUT_OF_BOUNDS, "RSMI_STATUS_INPUT_OUT_OF_BOUNDS: The provided input is out of allowable or safe range"},
	{RSMI_STATUS_INIT_ERROR, "RSMI_STATUS_INIT_ERROR: An error occurred during initialization, during monitor discovery or when when initializing internal data structures"},
	{RSMI_STATUS_NOT_FOUND, "RSMI_STATUS_NOT_FOUND: An item required to complete the call was not found"},
	{RSMI_STATUS_INSUFFICIENT_SIZE, "RSMI_STATUS_INSUFFICIENT_SIZE: Not enough resources were available to fully execute the call"},
};

rsmi_status_t rsmi_status_string(rsmi_status_t status, const char **text)
{
	size_t i;

	if (text == NULL)
		return RSMI_STATUS_INVALID_ARGS;
	for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].code == status) {
			*text = statuses[i].text;
			return RSMI_STATUS_SUCCESS;
		}
	*text = "An unknown error occurred";
	return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_num_monitor_devices(uint32_t *n)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(RSMI_STATUS_INIT_ERROR);
	if (n == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	*n = (uint32_t)fn_device_count();
	return leave(RSMI_STATUS_SUCCESS);
}

rsmi_status_t rsmi_dev_name_get(uint32_t dv, char *name, size_t len)
{
	rsmi_status_t rc = enter_dev(dv);

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (name == NULL || len == 0)
		return leave(RSMI_STATUS_INVALID_ARGS);
	fn_gpu_name((int)dv, name, len);
	return leave(RSMI_STATUS_SUCCESS);
}

rsmi_status_t rsmi_dev_unique_id_get(uint32_t dv, uint64_t *id)
{
	rsmi_status_t rc = enter_dev(dv);
	unsigned long long v;

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (id == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	if (!fa_unique_id((int)dv, &v))
		return leave(RSMI_STATUS_NOT_SUPPORTED);
	*id = v;
	return leave(RSMI_STATUS_SUCCESS);
}

/* BDFID = domain << 32 | bus << 8 | device << 3 | function (rocm_smi.h). */
rsmi_status_t rsmi_dev_pci_id_get(uint32_t dv, uint64_t *bdfid)
{
	rsmi_status_t rc = enter_dev(dv);
	unsigned d, b, s, f;

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (bdfid == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	if (fa_pci((int)dv, &d, &b, &s, &f) != 0)
		return leave(RSMI_STATUS_NOT_SUPPORTED);
	*bdfid = (uint64_t)d << 32 | (uint64_t)(b & 0xff) << 8 | (uint64_t)(s & 0x1f) << 3 | (f & 0x7);
	return leave(RSMI_STATUS_SUCCESS);
}

/* activity sums the live processes' bytes and kernel duty on a GPU. */
static void activity(int gpu, unsigned long long *bytes, int *duty)
{
	struct fn_proc *procs;
	int i, n;
	int64_t now = fn_now_ns();

	*bytes = 0;
	*duty = 0;
	n = fn_load_procs(gpu, &procs);
	for (i = 0; i < n; i++) {
		if (!fn_pid_alive(procs[i].pid))
			continue;
		*bytes += procs[i].bytes;
		*duty += fn_duty(&procs[i], now);
	}
	free(procs);
}

rsmi_status_t rsmi_dev_busy_percent_get(uint32_t dv, uint32_t *busy)
{
	rsmi_status_t rc = enter_dev(dv);
	unsigned long long bytes;
	int duty, base;

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (busy == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	base = fn_gpu_util((int)dv);
	if (base < 0)
		return leave(RSMI_STATUS_NOT_SUPPORTED);
	activity((int)dv, &bytes, &duty);
	*busy = (uint32_t)(base + duty > 100 ? 100 : base + duty);
	return leave(RSMI_STATUS_SUCCESS);
}

rsmi_status_t rsmi_dev_memory_total_get(uint32_t dv, int type, uint64_t *total)
{
	rsmi_status_t rc = enter_dev(dv);

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (total == NULL || type < RSMI_MEM_TYPE_VRAM || type > RSMI_MEM_TYPE_GTT)
		return leave(RSMI_STATUS_INVALID_ARGS);
	*total = type == RSMI_MEM_TYPE_GTT ? 0 : fn_gpu_total((int)dv);
	return leave(RSMI_STATUS_SUCCESS);
}

rsmi_status_t rsmi_dev_memory_usage_get(uint32_t dv, int type, uint64_t *used)
{
	rsmi_status_t rc = enter_dev(dv);
	unsigned long long bytes;
	int duty;

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (used == NULL || type < RSMI_MEM_TYPE_VRAM || type > RSMI_MEM_TYPE_GTT)
		return leave(RSMI_STATUS_INVALID_ARGS);
	activity((int)dv, &bytes, &duty);
	*used = type == RSMI_MEM_TYPE_GTT ? 0 : bytes;
	return leave(RSMI_STATUS_SUCCESS);
}

/* power = idle power + 3 W per 100% of the live processes' duty, in uW. */
static inline uint64_t power_uw(int gpu)
{
	unsigned long long bytes;
	int duty;

	activity(gpu, &bytes, &duty);
	return ((uint64_t)fn_gpu_power(gpu) + (uint64_t)duty * 30) * 1000;
}

#ifndef FAKEROCMSMI_HIDE_rsmi_dev_power_ave_get
rsmi_status_t rsmi_dev_power_ave_get(uint32_t dv, uint32_t sensor, uint64_t *power)
{
	rsmi_status_t rc = enter_dev(dv);

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (power == NULL || sensor != 0)
		return leave(RSMI_STATUS_INVALID_ARGS);
	*power = power_uw((int)dv);
	return leave(RSMI_STATUS_SUCCESS);
}
#endif

#ifndef FAKEROCMSMI_HIDE_rsmi_dev_current_socket_power_get
rsmi_status_t rsmi_dev_current_socket_power_get(uint32_t dv, uint64_t *power)
{
	rsmi_status_t rc = enter_dev(dv);

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (power == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	*power = power_uw((int)dv);
	return leave(RSMI_STATUS_SUCCESS);
}
#endif

#ifndef FAKEROCMSMI_HIDE_rsmi_dev_compute_partition_get
rsmi_status_t rsmi_dev_compute_partition_get(uint32_t dv, char *out, uint32_t len)
{
	rsmi_status_t rc = enter_dev(dv);
	char buf[64];

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (out == NULL || len == 0)
		return leave(RSMI_STATUS_INVALID_ARGS);
	if (fn_gpu_read((int)dv, "compute_partition", buf, sizeof buf) != 0 || buf[0] == '\0')
		return leave(RSMI_STATUS_NOT_SUPPORTED);
	if (strlen(buf) >= len)
		return leave(RSMI_STATUS_INSUFFICIENT_SIZE);
	memcpy(out, buf, strlen(buf) + 1);
	return leave(RSMI_STATUS_SUCCESS);
}
#endif

/* ------------------------------------------------------- processes */

/* A process of the node: its pid, and its bytes on each GPU. */
struct fs_proc {
	uint32_t pid;
	unsigned long long bytes[FN_MAX_GPUS];
	int on[FN_MAX_GPUS];
};

/*
 * node_procs returns (in *out, malloc'd) every live process with a
 * context on some GPU of the node, sorted by pid, plus the phantoms
 * rocm_smi_grow asks for (on no GPU). Called with the lock held.
 */
static int node_procs(struct fs_proc **out, int phantoms)
{
	struct fs_proc *ps = NULL, *grown;
	struct fn_proc *recs;
	int n = 0, cap = 0, g, i, j, k, ngpu = fn_device_count();

	for (g = 0; g < ngpu; g++) {
		k = fn_load_procs(g, &recs);
		for (i = 0; i < k; i++) {
			if (recs[i].contexts <= 0 || !fn_pid_alive(recs[i].pid))
				continue;
			for (j = 0; j < n && ps[j].pid != (uint32_t)recs[i].pid; j++)
				;
			if (j == n) {
				if (n == cap) {
					cap = cap ? 2 * cap : 8;
					grown = realloc(ps, (size_t)cap * sizeof *ps);
					if (grown == NULL)
						break;
					ps = grown;
				}
				memset(&ps[n], 0, sizeof ps[n]);
				ps[n].pid = (uint32_t)recs[i].pid;
				n++;
			}
			ps[j].bytes[g] = recs[i].bytes;
			ps[j].on[g] = 1;
		}
		free(recs);
	}
	for (i = 0; i < phantoms; i++) {
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			grown = realloc(ps, (size_t)cap * sizeof *ps);
			if (grown == NULL)
				break;
			ps = grown;
		}
		memset(&ps[n], 0, sizeof ps[n]);
		ps[n].pid = FS_PHANTOM_PID + (uint32_t)i;
		n++;
	}
	*out = ps;
	return n;
}

static void fill_info(const struct fs_proc *p, rsmi_process_info_t *info, int gpu)
{
	int g;

	memset(info, 0, sizeof *info);
	info->process_id = p->pid;
	info->pasid = p->pid & 0xffff;
	for (g = 0; g < FN_MAX_GPUS; g++)
		if (gpu < 0 || g == gpu)
			info->vram_usage += p->bytes[g];
}

rsmi_status_t rsmi_compute_process_info_get(rsmi_process_info_t *procs, uint32_t *num)
{
	struct fs_proc *ps;
	char buf[64];
	unsigned long long grow = 0, phantoms = 0;
	uint32_t i;
	int n;

	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(RSMI_STATUS_INIT_ERROR);
	if (num == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	list_calls++;
	if (fn_node_read("rocm_smi_grow", buf, sizeof buf) == 0) {
		if (buf[0] == 'x' && fn_parse_u64(buf + 1, &grow) == 0)
			phantoms = grow << (list_calls < 16 ? list_calls : 16);
		else if (fn_parse_u64(buf, &grow) == 0)
			phantoms = grow * list_calls;
	}
	n = node_procs(&ps, (int)phantoms);
	if (procs == NULL) {
		*num = (uint32_t)n;
		free(ps);
		return leave(RSMI_STATUS_SUCCESS);
	}
	for (i = 0; i < *num && i < (uint32_t)n; i++)
		fill_info(&ps[i], &procs[i], -1);
	free(ps);
	if ((uint32_t)n > *num)
		return leave(RSMI_STATUS_INSUFFICIENT_SIZE);
	*num = (uint32_t)n;
	return leave(RSMI_STATUS_SUCCESS);
}

/* find_proc loads the node's processes and returns pid's, or NULL. */
static struct fs_proc *find_proc(uint32_t pid, struct fs_proc **all)
{
	int i, n = node_procs(all, 0);

	for (i = 0; i < n; i++)
		if ((*all)[i].pid == pid)
			return &(*all)[i];
	return NULL;
}

rsmi_status_t rsmi_compute_process_info_by_pid_get(uint32_t pid, rsmi_process_info_t *proc)
{
	struct fs_proc *all, *p;

	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(RSMI_STATUS_INIT_ERROR);
	if (proc == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	p = find_proc(pid, &all);
	if (p != NULL)
		fill_info(p, proc, -1);
	free(all);
	return leave(p != NULL ? RSMI_STATUS_SUCCESS : RSMI_STATUS_NOT_FOUND);
}

#ifndef FAKEROCMSMI_HIDE_rsmi_compute_process_info_by_device_get
rsmi_status_t rsmi_compute_process_info_by_device_get(uint32_t pid, uint32_t dv, rsmi_process_info_t *proc)
{
	rsmi_status_t rc = enter_dev(dv);
	struct fs_proc *all, *p;

	if (rc != RSMI_STATUS_SUCCESS)
		return leave(rc);
	if (proc == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	p = find_proc(pid, &all);
	if (p != NULL && p->on[dv])
		fill_info(p, proc, (int)dv);
	else
		p = NULL;
	free(all);
	return leave(p != NULL ? RSMI_STATUS_SUCCESS : RSMI_STATUS_NOT_FOUND);
}
#endif

rsmi_status_t rsmi_compute_process_gpus_get(uint32_t pid, uint32_t *dv_indices, uint32_t *num)
{
	struct fs_proc *all, *p;
	uint32_t k = 0, g, ngpu;

	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(RSMI_STATUS_INIT_ERROR);
	if (num == NULL)
		return leave(RSMI_STATUS_INVALID_ARGS);
	p = find_proc(pid, &all);
	if (p == NULL) {
		free(all);
		return leave(RSMI_STATUS_NOT_FOUND);
	}
	ngpu = (uint32_t)fn_device_count();
	for (g = 0; g < ngpu; g++) {
		if (!p->on[g])
			continue;
		if (dv_indices != NULL && k < *num)
			dv_indices[k] = g;
		k++;
	}
	free(all);
	if (dv_indices == NULL) {
		*num = k;
		return leave(RSMI_STATUS_SUCCESS);
	}
	if (k > *num)
		return leave(RSMI_STATUS_INSUFFICIENT_SIZE);
	*num = k;
	return leave(RSMI_STATUS_SUCCESS);
}

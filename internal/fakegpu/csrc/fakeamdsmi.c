/*
 * fakeamdsmi.c - a fake AMD SMI library (libamd_smi) for tests.
 *
 * It implements the part of AMD SMI keepgpu reads, against the simulated
 * node of fakenode.h and fakeamd.h, as fakerocmsmi.c does for ROCm SMI:
 * one socket per GPU of the node, each with one GPU processor (AMD SMI,
 * like ROCm SMI, sees the whole node whatever ROCR_VISIBLE_DEVICES says),
 * busy percent, VRAM, power, compute partition, the processes with memory
 * on each GPU, and the PCI location.
 *
 * The library version, and with it the process-list ABI, is chosen at
 * build time: FAKEAMDSMI_YEAR, _MAJOR, _MINOR (default 24.6.0, ROCm 6.2).
 * Before 24.5.1 (ROCm 6.0 and 6.1.0) amdsmi_get_gpu_process_list returns
 * process handles (pids) and amdsmi_get_gpu_process_info fills one
 * amdsmi_proc_info_t; from 24.5.1 on the list holds amdsmi_proc_info_t
 * itself. FAKEAMDSMI_VERSION_V7 writes amdsmi_version_t without its year
 * field, as a library whose layout keepgpu has not checked might.
 *
 * $FAKEGPU_DIR/amd_smi_init_error holds the status amdsmi_init returns.
 *
 * All declarations below are our own; only the ABI (function signatures,
 * struct layouts and numeric values) follows AMD's public amdsmi.h.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdint.h>

#include "fakenode.h"
#include "fakeamd.h"

#ifndef FAKEAMDSMI_YEAR
#define FAKEAMDSMI_YEAR 24
#endif
#ifndef FAKEAMDSMI_MAJOR
#define FAKEAMDSMI_MAJOR 6
#endif
#ifndef FAKEAMDSMI_MINOR
#define FAKEAMDSMI_MINOR 0
#endif
#define FAKEAMDSMI_HANDLES (FAKEAMDSMI_YEAR < 24 || (FAKEAMDSMI_MAJOR == 5 && FAKEAMDSMI_MINOR == 0))

typedef int amdsmi_status_t;

enum {
	AMDSMI_STATUS_SUCCESS = 0,
	AMDSMI_STATUS_INVAL = 1,
	AMDSMI_STATUS_NOT_SUPPORTED = 2,
	AMDSMI_STATUS_OUT_OF_RESOURCES = 15,
	AMDSMI_STATUS_INIT_ERROR = 18,
	AMDSMI_STATUS_NOT_FOUND = 31,
	AMDSMI_STATUS_NOT_INIT = 32,
	AMDSMI_STATUS_INSUFFICIENT_SIZE = 41,
};

enum { AMDSMI_INIT_AMD_GPUS = 1 << 1 };
enum { AMDSMI_PROCESSOR_TYPE_AMD_GPU = 1 };
enum { AMDSMI_MEM_TYPE_VRAM = 0, AMDSMI_MEM_TYPE_VIS_VRAM = 1, AMDSMI_MEM_TYPE_GTT = 2 };

#define NORMAL_STRING 32

typedef void *amdsmi_processor_handle;
typedef void *amdsmi_socket_handle;
typedef uint32_t amdsmi_process_handle_t;

typedef struct {
#ifndef FAKEAMDSMI_VERSION_V7
	uint32_t year;
#endif
	uint32_t major;
	uint32_t minor;
	uint32_t release;
	const char *build;
} amdsmi_version_t;

typedef struct {
	uint32_t gfx_activity;
	uint32_t umc_activity;
	uint32_t mm_activity;
	uint32_t reserved[13];
} amdsmi_engine_usage_t;

typedef struct {
	uint32_t current_socket_power;
	uint32_t average_socket_power;
	uint32_t gfx_voltage;
	uint32_t soc_voltage;
	uint32_t mem_voltage;
	uint32_t power_limit;
	uint32_t reserved[11];
} amdsmi_power_info_t;

typedef struct {
	char name[NORMAL_STRING];
	amdsmi_process_handle_t pid;
	uint64_t mem;
	struct {
		uint64_t gfx;
		uint64_t enc;
		uint32_t reserved[12];
	} engine_usage;
	struct {
		uint64_t gtt_mem;
		uint64_t cpu_mem;
		uint64_t vram_mem;
		uint32_t reserved[10];
	} memory_usage;
	char container_name[NORMAL_STRING];
	uint32_t reserved[4];
} amdsmi_proc_info_t;

_Static_assert(sizeof(amdsmi_engine_usage_t) == 64, "amdsmi_engine_usage_t");
_Static_assert(sizeof(amdsmi_power_info_t) == 68, "amdsmi_power_info_t");
_Static_assert(sizeof(amdsmi_proc_info_t) == 224, "amdsmi_proc_info_t");
_Static_assert(sizeof(amdsmi_version_t) == 24, "amdsmi_version_t");

/*
 * Handles: socket i is &sockets[i], processor i is &gpus[i]; both name
 * the node's GPU i.
 */
static char sockets[FN_MAX_GPUS], gpus[FN_MAX_GPUS];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int refs;

static amdsmi_status_t leave(amdsmi_status_t rc)
{
	pthread_mutex_unlock(&mu);
	return rc;
}

/* enter_gpu takes the lock, checks init and stores the GPU of h in *gpu. */
static amdsmi_status_t enter_gpu(amdsmi_processor_handle h, int *gpu)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return AMDSMI_STATUS_NOT_INIT;
	if ((char *)h < gpus || (char *)h >= gpus + fn_device_count())
		return AMDSMI_STATUS_INVAL;
	*gpu = (int)((char *)h - gpus);
	return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_init(uint64_t flags)
{
	int code;

	pthread_mutex_lock(&mu);
	if (fn_init_error("amd_smi_init_error", &code) && code != AMDSMI_STATUS_SUCCESS)
		return leave(code);
	if (!(flags & AMDSMI_INIT_AMD_GPUS))
		return leave(AMDSMI_STATUS_NOT_SUPPORTED);
	refs++;
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_shut_down(void)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(AMDSMI_STATUS_NOT_INIT);
	refs--;
	return leave(AMDSMI_STATUS_SUCCESS);
}

static const struct {
	amdsmi_status_t code;
	const char *text;
} statuses[] = {
	{AMDSMI_STATUS_SUCCESS, "Success"},
	{AMDSMI_STATUS_INVAL, "Invalid parameters"},
	{AMDSMI_STATUS_NOT_SUPPORTED, "Command not supported"},
	{AMDSMI_STATUS_OUT_OF_RESOURCES, "Not enough memory"},
	{AMDSMI_STATUS_INIT_ERROR, "An error occurred when initializing internal data structures"},
	{AMDSMI_STATUS_NOT_FOUND, "Device Not found"},
	{AMDSMI_STATUS_NOT_INIT, "Device not initialized"},
	{AMDSMI_STATUS_INSUFFICIENT_SIZE, "Not enough resources were available for the operation"},
};

amdsmi_status_t amdsmi_status_code_to_string(amdsmi_status_t status, const char **text)
{
	size_t i;

	if (text == NULL)
		return AMDSMI_STATUS_INVAL;
	for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].code == status) {
			*text = statuses[i].text;
			return AMDSMI_STATUS_SUCCESS;
		}
	*text = "An unknown error occurred";
	return AMDSMI_STATUS_SUCCESS;
}

#define STR2(x) #x
#define STR(x) STR2(x)

amdsmi_status_t amdsmi_get_lib_version(amdsmi_version_t *v)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(AMDSMI_STATUS_NOT_INIT);
	if (v == NULL)
		return leave(AMDSMI_STATUS_INVAL);
#ifndef FAKEAMDSMI_VERSION_V7
	v->year = FAKEAMDSMI_YEAR;
#endif
	v->major = FAKEAMDSMI_MAJOR;
	v->minor = FAKEAMDSMI_MINOR;
	v->release = 0;
	v->build = STR(FAKEAMDSMI_YEAR) "." STR(FAKEAMDSMI_MAJOR) "." STR(FAKEAMDSMI_MINOR) ".0";
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_get_socket_handles(uint32_t *count, amdsmi_socket_handle *out)
{
	uint32_t i, n;

	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(AMDSMI_STATUS_NOT_INIT);
	if (count == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	n = (uint32_t)fn_device_count();
	if (out == NULL) {
		*count = n;
		return leave(AMDSMI_STATUS_SUCCESS);
	}
	for (i = 0; i < n && i < *count; i++)
		out[i] = &sockets[i];
	*count = i;
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_get_processor_handles(amdsmi_socket_handle s, uint32_t *count, amdsmi_processor_handle *out)
{
	pthread_mutex_lock(&mu);
	if (refs == 0)
		return leave(AMDSMI_STATUS_NOT_INIT);
	if (count == NULL || (char *)s < sockets || (char *)s >= sockets + fn_device_count())
		return leave(AMDSMI_STATUS_INVAL);
	if (out == NULL) {
		*count = 1;
		return leave(AMDSMI_STATUS_SUCCESS);
	}
	if (*count < 1)
		return leave(AMDSMI_STATUS_INVAL);
	out[0] = &gpus[(char *)s - sockets];
	*count = 1;
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_get_processor_type(amdsmi_processor_handle h, uint32_t *type)
{
	int gpu;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (type == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	*type = AMDSMI_PROCESSOR_TYPE_AMD_GPU;
	return leave(AMDSMI_STATUS_SUCCESS);
}

/* amdsmi_bdf_t: function in bits 0-2, device 3-7, bus 8-15, domain 16-63. */
amdsmi_status_t amdsmi_get_gpu_device_bdf(amdsmi_processor_handle h, uint64_t *bdf)
{
	int gpu;
	unsigned d, b, s, f;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (bdf == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	if (fa_pci(gpu, &d, &b, &s, &f) != 0)
		return leave(AMDSMI_STATUS_NOT_SUPPORTED);
	*bdf = (uint64_t)d << 16 | (uint64_t)(b & 0xff) << 8 | (uint64_t)(s & 0x1f) << 3 | (f & 0x7);
	return leave(AMDSMI_STATUS_SUCCESS);
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

amdsmi_status_t amdsmi_get_gpu_activity(amdsmi_processor_handle h, amdsmi_engine_usage_t *info)
{
	int gpu, duty, base;
	unsigned long long bytes;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (info == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	base = fn_gpu_util(gpu);
	if (base < 0)
		return leave(AMDSMI_STATUS_NOT_SUPPORTED);
	activity(gpu, &bytes, &duty);
	memset(info, 0, sizeof *info);
	info->gfx_activity = (uint32_t)(base + duty > 100 ? 100 : base + duty);
	info->umc_activity = 1;
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_get_gpu_memory_total(amdsmi_processor_handle h, int type, uint64_t *total)
{
	int gpu;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (total == NULL || type < AMDSMI_MEM_TYPE_VRAM || type > AMDSMI_MEM_TYPE_GTT)
		return leave(AMDSMI_STATUS_INVAL);
	*total = type == AMDSMI_MEM_TYPE_GTT ? 0 : fn_gpu_total(gpu);
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_get_gpu_memory_usage(amdsmi_processor_handle h, int type, uint64_t *used)
{
	int gpu, duty;
	unsigned long long bytes;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (used == NULL || type < AMDSMI_MEM_TYPE_VRAM || type > AMDSMI_MEM_TYPE_GTT)
		return leave(AMDSMI_STATUS_INVAL);
	activity(gpu, &bytes, &duty);
	*used = type == AMDSMI_MEM_TYPE_GTT ? 0 : bytes;
	return leave(AMDSMI_STATUS_SUCCESS);
}

/* Socket power in watts: idle power + 3 W per 100% of the processes' duty. */
amdsmi_status_t amdsmi_get_power_info(amdsmi_processor_handle h, amdsmi_power_info_t *info)
{
	int gpu, duty;
	unsigned long long bytes;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (info == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	activity(gpu, &bytes, &duty);
	memset(info, 0, sizeof *info);
	info->current_socket_power = (fn_gpu_power(gpu) + (unsigned)duty * 30) / 1000;
	info->average_socket_power = info->current_socket_power;
	info->power_limit = 300;
	return leave(AMDSMI_STATUS_SUCCESS);
}

amdsmi_status_t amdsmi_get_gpu_compute_partition(amdsmi_processor_handle h, char *out, uint32_t len)
{
	int gpu;
	char buf[64];
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (out == NULL || len == 0)
		return leave(AMDSMI_STATUS_INVAL);
	if (fn_gpu_read(gpu, "compute_partition", buf, sizeof buf) != 0 || buf[0] == '\0')
		return leave(AMDSMI_STATUS_NOT_SUPPORTED);
	if (strlen(buf) >= len)
		return leave(AMDSMI_STATUS_INSUFFICIENT_SIZE);
	memcpy(out, buf, strlen(buf) + 1);
	return leave(AMDSMI_STATUS_SUCCESS);
}

/* ------------------------------------------------------- processes */

/*
 * gpu_procs returns (in *out, malloc'd) the live processes with a context
 * on gpu, sorted by pid. Called with the lock held.
 */
static int gpu_procs(int gpu, struct fn_proc **out)
{
	int i, k = 0, n = fn_load_procs(gpu, out);

	for (i = 0; i < n; i++)
		if ((*out)[i].contexts > 0 && fn_pid_alive((*out)[i].pid))
			(*out)[k++] = (*out)[i];
	return k;
}

static void fill_info(const struct fn_proc *p, amdsmi_proc_info_t *info)
{
	memset(info, 0, sizeof *info);
	snprintf(info->name, sizeof info->name, "pid%d", p->pid);
	info->pid = (uint32_t)p->pid;
	info->mem = p->bytes;
	info->memory_usage.vram_mem = p->bytes;
	info->memory_usage.gtt_mem = 2 << 20;
}

#if FAKEAMDSMI_HANDLES
amdsmi_status_t amdsmi_get_gpu_process_list(amdsmi_processor_handle h, uint32_t *max, amdsmi_process_handle_t *list)
#else
amdsmi_status_t amdsmi_get_gpu_process_list(amdsmi_processor_handle h, uint32_t *max, amdsmi_proc_info_t *list)
#endif
{
	int gpu, n, i;
	struct fn_proc *ps;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (max == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	n = gpu_procs(gpu, &ps);
	if (*max == 0 || n == 0) {
		*max = (uint32_t)n;
		free(ps);
		return leave(AMDSMI_STATUS_SUCCESS);
	}
	if (list == NULL) {
		free(ps);
		return leave(AMDSMI_STATUS_INVAL);
	}
	for (i = 0; i < n && (uint32_t)i < *max; i++) {
#if FAKEAMDSMI_HANDLES
		list[i] = (uint32_t)ps[i].pid;
#else
		fill_info(&ps[i], &list[i]);
#endif
	}
	free(ps);
	rc = (uint32_t)n > *max ? AMDSMI_STATUS_OUT_OF_RESOURCES : AMDSMI_STATUS_SUCCESS;
	*max = (uint32_t)n;
	return leave(rc);
}

#if FAKEAMDSMI_HANDLES
amdsmi_status_t amdsmi_get_gpu_process_info(amdsmi_processor_handle h, amdsmi_process_handle_t pid, amdsmi_proc_info_t *info)
{
	int gpu, n, i;
	struct fn_proc *ps;
	amdsmi_status_t rc = enter_gpu(h, &gpu);

	if (rc != AMDSMI_STATUS_SUCCESS)
		return leave(rc);
	if (info == NULL)
		return leave(AMDSMI_STATUS_INVAL);
	n = gpu_procs(gpu, &ps);
	rc = AMDSMI_STATUS_NOT_FOUND;
	for (i = 0; i < n; i++)
		if ((uint32_t)ps[i].pid == pid) {
			fill_info(&ps[i], info);
			rc = AMDSMI_STATUS_SUCCESS;
		}
	free(ps);
	return leave(rc);
}
#endif

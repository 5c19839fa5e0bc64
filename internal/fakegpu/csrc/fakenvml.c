/*
 * fakenvml.c - a fake libnvidia-ml.so.1 (NVML) for tests.
 *
 * It reports the simulated node described in fakenode.h: the GPUs'
 * properties come from the files in $FAKEGPU_DIR/gpu<i>, and memory use,
 * running compute processes, utilization and power are derived from the
 * process records the fake libcuda (or a test) writes. Records of dead
 * pids are ignored, as the real driver reclaims a dead process's memory.
 *
 * NVML sees every physical GPU: it ignores CUDA_VISIBLE_DEVICES.
 *
 * All declarations below are our own; only the ABI (function signatures,
 * struct layouts and numeric values) follows NVIDIA's NVML (nvml.h).
 *
 * A driver older than a versioned or optional call lacks its symbol, and
 * dlsym of a symbol that is there always succeeds: such a driver is built
 * from this file with -DFAKENVML_HIDE_<symbol> (say
 * -DFAKENVML_HIDE_nvmlInit_v2), which leaves <symbol> out of the library.
 * fakegpu.BuildNVML lists the symbols that can be hidden.
 */
#define _GNU_SOURCE /* renameat2 (in fakenode.h) */

#include <pthread.h>
#include <stdint.h>

#include "fakenode.h"

/* ------------------------------------------------------------- types */

typedef int nvmlReturn_t;
typedef struct fm_device *nvmlDevice_t;

/* Result codes (nvmlReturn_t values). */
enum {
	NVML_SUCCESS = 0,
	NVML_ERROR_UNINITIALIZED = 1,
	NVML_ERROR_INVALID_ARGUMENT = 2,
	NVML_ERROR_NOT_SUPPORTED = 3,
	NVML_ERROR_NOT_FOUND = 6,
	NVML_ERROR_INSUFFICIENT_SIZE = 7,
	NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
};

/* nvmlMemory_t, nvmlDeviceGetMemoryInfo's struct. */
struct fm_memory {
	unsigned long long total;
	unsigned long long free;
	unsigned long long used;
};

/*
 * nvmlMemory_v2_t, nvmlDeviceGetMemoryInfo_v2's struct; the caller sets
 * version to sizeof | 2 << 24.
 */
struct fm_memory_v2 {
	unsigned version;
	unsigned long long total;
	unsigned long long reserved;
	unsigned long long free;
	unsigned long long used;
};

#define FM_MEMORY_V2 ((unsigned)sizeof(struct fm_memory_v2) | 2u << 24)


/* nvmlDeviceGetUtilizationRates's struct. */
struct fm_utilization {
	unsigned gpu;
	unsigned memory;
};

/*
 * nvmlProcessInfo_v1_t, one running process as
 * nvmlDeviceGetComputeRunningProcesses (no suffix) fills it.
 */
struct fm_process_info_v1 {
	unsigned pid;
	unsigned long long used_gpu_memory;
};

/*
 * nvmlProcessInfo_v2_t (= nvmlProcessInfo_t), one running process as
 * nvmlDeviceGetComputeRunningProcesses_v2 and _v3 fill it.
 */
struct fm_process_info {
	unsigned pid;
	unsigned long long used_gpu_memory;
	unsigned gpu_instance_id;
	unsigned compute_instance_id;
};

/* One nvmlDeviceGetProcessUtilization sample. */
struct fm_process_sample {
	unsigned pid;
	unsigned long long timestamp; /* microseconds */
	unsigned sm_util;
	unsigned mem_util;
	unsigned enc_util;
	unsigned dec_util;
};

_Static_assert(sizeof(struct fm_memory) == 24, "nvmlMemory_t layout");
_Static_assert(sizeof(struct fm_memory_v2) == 40, "nvmlMemory_v2_t layout");
_Static_assert(sizeof(struct fm_process_info_v1) == 16, "process info v1 layout");
_Static_assert(sizeof(struct fm_process_info) == 24, "process info layout");
_Static_assert(sizeof(struct fm_process_sample) == 32, "process sample layout");

/* What a handle points at: one slot per possible GPU. */
struct fm_device {
	int index;
};

#define DRIVER_VERSION "550.54.15"
#define CUDA_DRIVER_VERSION 12040
#define TEMPERATURE_C 35
#define TEMPERATURE_SENSOR_GPU 0
#define NO_INSTANCE 0xFFFFFFFFu

/* Extra power a fully busy GPU draws over its idle power. */
#define BUSY_EXTRA_MW 3000ULL

/* ------------------------------------------------------------ state */

/* One lock guards everything below. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int refcount; /* successful nvmlInit* minus nvmlShutdown */
static struct fm_device devices[FN_MAX_GPUS];

/* enter takes the lock and reports whether NVML is initialized. */
static nvmlReturn_t enter(void)
{
	pthread_mutex_lock(&mu);
	return refcount > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

/* leave drops the lock and passes rc through. */
static nvmlReturn_t leave(nvmlReturn_t rc)
{
	pthread_mutex_unlock(&mu);
	return rc;
}

/*
 * enter_dev is enter for calls on a device: it also checks the handle and
 * stores the GPU's index in *gpu.
 */
static nvmlReturn_t enter_dev(nvmlDevice_t dev, int *gpu)
{
	nvmlReturn_t rc = enter();

	if (rc != NVML_SUCCESS)
		return rc;
	if (dev < devices || dev >= devices + FN_MAX_GPUS || dev->index >= fn_device_count())
		return NVML_ERROR_INVALID_ARGUMENT;
	*gpu = dev->index;
	return NVML_SUCCESS;
}

/* copy_string copies s into buf (len bytes), or reports it does not fit. */
static nvmlReturn_t copy_string(char *buf, unsigned len, const char *s)
{
	if (buf == NULL)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (strlen(s) + 1 > len)
		return NVML_ERROR_INSUFFICIENT_SIZE;
	memcpy(buf, s, strlen(s) + 1);
	return NVML_SUCCESS;
}

/* ---------------------------------------------------------- activity */

/* What the live processes on one GPU add up to. */
struct fm_activity {
	unsigned long long used; /* bytes held by live processes */
	int duty;                /* sum of their kernel duty, percent */
	int nprocs;              /* live processes with a context */
};

/*
 * load_live reads GPU gpu's records and keeps the live ones, compacted at
 * the front of *procs (free it). It returns how many are live.
 */
static int load_live(int gpu, struct fn_proc **procs)
{
	int i, n, live = 0;

	n = fn_load_procs(gpu, procs);
	for (i = 0; i < n; i++)
		if (fn_pid_alive((*procs)[i].pid))
			(*procs)[live++] = (*procs)[i];
	return live;
}

static struct fm_activity activity(int gpu)
{
	struct fm_activity a = {0, 0, 0};
	struct fn_proc *procs;
	int64_t now = fn_now_ns();
	int i, n;

	n = load_live(gpu, &procs);
	for (i = 0; i < n; i++) {
		a.used += procs[i].bytes;
		a.duty += fn_duty(&procs[i], now);
		if (procs[i].contexts > 0)
			a.nprocs++;
	}
	free(procs);
	return a;
}

/* utilization_supported is false when util is "na" or MIG is on. */
static int utilization_supported(int gpu)
{
	return fn_gpu_util(gpu) >= 0 && !fn_gpu_mig(gpu);
}

/* ------------------------------------------------- init and shutdown */

static nvmlReturn_t init(void)
{
	nvmlReturn_t rc = NVML_SUCCESS;
	int code, i;

	pthread_mutex_lock(&mu);
	if (fn_init_error("nvml_init_error", &code) && code != NVML_SUCCESS) {
		rc = code;
	} else {
		for (i = 0; i < FN_MAX_GPUS; i++)
			devices[i].index = i;
		refcount++;
	}
	return leave(rc);
}

#ifndef FAKENVML_HIDE_nvmlInit_v2
nvmlReturn_t nvmlInit_v2(void)
{
	return init();
}
#endif

nvmlReturn_t nvmlInit(void)
{
	return init();
}

nvmlReturn_t nvmlInitWithFlags(unsigned flags)
{
	(void)flags;
	return init();
}

nvmlReturn_t nvmlShutdown(void)
{
	nvmlReturn_t rc = enter();

	if (rc == NVML_SUCCESS)
		refcount--;
	return leave(rc);
}

#ifndef FAKENVML_HIDE_nvmlErrorString
static const struct {
	nvmlReturn_t code;
	const char *text;
} errors[] = {
	{0, "Success"},
	{1, "Uninitialized"},
	{2, "Invalid Argument"},
	{3, "Not Supported"},
	{4, "Insufficient Permissions"},
	{5, "Already Initialized"},
	{6, "Not Found"},
	{7, "Insufficient Size"},
	{8, "Insufficient External Power"},
	{9, "Driver Not Loaded"},
	{10, "Timeout"},
	{11, "Interrupt request issue"},
	{12, "Library Not Found"},
	{13, "Function Not Found"},
	{14, "Corrupted infoROM"},
	{15, "GPU is lost"},
	{16, "GPU requires restart"},
	{17, "The operating system has blocked the request."},
	{18, "RM has detected an NVML/RM version mismatch."},
	{19, "In use by another client"},
	{20, "Insufficient Memory"},
	{21, "No data"},
	{25, "The provided version is invalid/unsupported"},
	{999, "Unknown Error"},
};

/* nvmlErrorString works without nvmlInit, like the real one. */
const char *nvmlErrorString(nvmlReturn_t result)
{
	size_t i;

	for (i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == result)
			return errors[i].text;
	return "Unknown Error";
}
#endif

/* ------------------------------------------------------------ system */

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned len)
{
	nvmlReturn_t rc = enter();

	if (rc != NVML_SUCCESS)
		return leave(rc);
	return leave(copy_string(version, len, DRIVER_VERSION));
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version)
{
	nvmlReturn_t rc = enter();

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (version == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*version = CUDA_DRIVER_VERSION;
	return leave(NVML_SUCCESS);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version)
{
	return nvmlSystemGetCudaDriverVersion(version);
}

/* ---------------------------------------------------- device handles */

static nvmlReturn_t device_count(unsigned *count)
{
	nvmlReturn_t rc = enter();

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (count == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*count = (unsigned)fn_device_count();
	return leave(NVML_SUCCESS);
}

#ifndef FAKENVML_HIDE_nvmlDeviceGetCount_v2
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count)
{
	return device_count(count);
}
#endif

nvmlReturn_t nvmlDeviceGetCount(unsigned *count)
{
	return device_count(count);
}

static nvmlReturn_t handle_by_index(unsigned index, nvmlDevice_t *dev)
{
	nvmlReturn_t rc = enter();

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (dev == NULL || index >= (unsigned)fn_device_count())
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*dev = &devices[index];
	return leave(NVML_SUCCESS);
}

#ifndef FAKENVML_HIDE_nvmlDeviceGetHandleByIndex_v2
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *dev)
{
	return handle_by_index(index, dev);
}
#endif

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *dev)
{
	return handle_by_index(index, dev);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *dev)
{
	nvmlReturn_t rc = enter();
	char buf[128];
	int i, n;

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (uuid == NULL || dev == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	n = fn_device_count();
	for (i = 0; i < n; i++) {
		fn_gpu_uuid(i, buf, sizeof buf);
		if (strcmp(buf, uuid) == 0) {
			*dev = &devices[i];
			return leave(NVML_SUCCESS);
		}
	}
	return leave(NVML_ERROR_NOT_FOUND);
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t dev, unsigned *index)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (index == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*index = (unsigned)gpu;
	return leave(NVML_SUCCESS);
}

/* -------------------------------------------------- device properties */

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned len)
{
	char buf[256];
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	fn_gpu_name(gpu, buf, sizeof buf);
	return leave(copy_string(name, len, buf));
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned len)
{
	char buf[128];
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	fn_gpu_uuid(gpu, buf, sizeof buf);
	return leave(copy_string(uuid, len, buf));
}

nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t dev, int *mode)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (mode == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*mode = fn_gpu_compute_mode(gpu);
	return leave(NVML_SUCCESS);
}

#ifndef FAKENVML_HIDE_nvmlDeviceGetMigMode
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t dev, unsigned *current, unsigned *pending)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (current == NULL || pending == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*current = *pending = (unsigned)fn_gpu_mig(gpu);
	return leave(NVML_SUCCESS);
}
#endif

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t dev, int *major, int *minor)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (major == NULL || minor == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	fn_gpu_cc(gpu, major, minor);
	return leave(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, int sensor, unsigned *temp)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (sensor != TEMPERATURE_SENSOR_GPU || temp == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*temp = TEMPERATURE_C;
	return leave(NVML_SUCCESS);
}

/* ---------------------------------------------------- device activity */

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, struct fm_memory *mem)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);
	unsigned long long used;

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (mem == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	mem->total = fn_gpu_total(gpu);
	used = activity(gpu).used;
	mem->used = used;
	mem->free = used >= mem->total ? 0 : mem->total - used;
	return leave(NVML_SUCCESS);
}

#ifndef FAKENVML_HIDE_nvmlDeviceGetMemoryInfo_v2
/*
 * nvmlDeviceGetMemoryInfo_v2 also reports what the driver reserves (the
 * GPU's "reserved" setting), and counts it as used; a struct version other than nvmlMemory_v2 is refused.
 */
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, struct fm_memory_v2 *mem)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);
	unsigned long long used;

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (mem == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	if (mem->version != FM_MEMORY_V2)
		return leave(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
	mem->total = fn_gpu_total(gpu);
	mem->reserved = fn_gpu_reserved(gpu);
	used = activity(gpu).used + mem->reserved;
	mem->used = used;
	mem->free = used >= mem->total ? 0 : mem->total - used;
	return leave(NVML_SUCCESS);
}
#endif

/* gpu = min(100, base util + the live processes' kernel duty). */
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, struct fm_utilization *util)
{
	int gpu, busy;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (util == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	if (!utilization_supported(gpu))
		return leave(NVML_ERROR_NOT_SUPPORTED);
	busy = fn_gpu_util(gpu) + activity(gpu).duty;
	util->gpu = (unsigned)(busy > 100 ? 100 : busy);
	util->memory = 0;
	return leave(NVML_SUCCESS);
}

/* power = idle power + 3 W per 100% of the live processes' kernel duty. */
#ifndef FAKENVML_HIDE_nvmlDeviceGetPowerUsage
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned *mw)
{
	int gpu;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (mw == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	*mw = fn_gpu_power(gpu) + (unsigned)(BUSY_EXTRA_MW * (unsigned)activity(gpu).duty / 100);
	return leave(NVML_SUCCESS);
}
#endif

/*
 * running_processes fills infos with the live processes that hold a
 * context on the GPU, following NVML's array protocol: when *count is too
 * small it is set to the number needed and INSUFFICIENT_SIZE returned.
 * Exactly one of infos (nvmlProcessInfo_v2_t elements, for _v2 and _v3)
 * and infos_v1 (nvmlProcessInfo_v1_t, for the unversioned call) is used.
 */
static nvmlReturn_t running_processes(nvmlDevice_t dev, unsigned *count, struct fm_process_info *infos,
				      struct fm_process_info_v1 *infos_v1)
{
	struct fn_proc *procs;
	int gpu, i, n;
	unsigned k = 0;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (count == NULL || (infos == NULL && infos_v1 == NULL && *count > 0))
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	n = load_live(gpu, &procs);
	for (i = 0; i < n; i++)
		if (procs[i].contexts > 0)
			procs[k++] = procs[i];
	if (*count < k) {
		*count = k;
		free(procs);
		return leave(NVML_ERROR_INSUFFICIENT_SIZE);
	}
	for (i = 0; i < (int)k && infos_v1 != NULL; i++) {
		infos_v1[i].pid = (unsigned)procs[i].pid;
		infos_v1[i].used_gpu_memory = procs[i].bytes;
	}
	for (i = 0; i < (int)k && infos != NULL; i++) {
		infos[i].pid = (unsigned)procs[i].pid;
		infos[i].used_gpu_memory = procs[i].bytes;
		infos[i].gpu_instance_id = NO_INSTANCE;
		infos[i].compute_instance_id = NO_INSTANCE;
	}
	*count = k;
	free(procs);
	return leave(NVML_SUCCESS);
}

#ifndef FAKENVML_HIDE_nvmlDeviceGetComputeRunningProcesses_v3
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t dev, unsigned *count,
						     struct fm_process_info *infos)
{
	return running_processes(dev, count, infos, NULL);
}
#endif

#ifndef FAKENVML_HIDE_nvmlDeviceGetComputeRunningProcesses_v2
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t dev, unsigned *count,
						     struct fm_process_info *infos)
{
	return running_processes(dev, count, infos, NULL);
}
#endif

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t dev, unsigned *count,
						  struct fm_process_info_v1 *infos)
{
	return running_processes(dev, count, NULL, infos);
}

/*
 * nvmlDeviceGetProcessUtilization returns one sample per live process with
 * a context, its SM utilization being its kernel duty. Called with samples
 * NULL it reports the count needed with INSUFFICIENT_SIZE, as NVML does.
 * last_seen is ignored: every sample is taken now.
 */
#ifndef FAKENVML_HIDE_nvmlDeviceGetProcessUtilization
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t dev, struct fm_process_sample *samples,
					     unsigned *count, unsigned long long last_seen)
{
	struct fn_proc *procs;
	struct timespec ts;
	unsigned long long stamp;
	int64_t now = fn_now_ns();
	int gpu, i, n;
	unsigned k = 0;
	nvmlReturn_t rc = enter_dev(dev, &gpu);

	(void)last_seen;
	if (rc != NVML_SUCCESS)
		return leave(rc);
	if (count == NULL)
		return leave(NVML_ERROR_INVALID_ARGUMENT);
	if (!utilization_supported(gpu))
		return leave(NVML_ERROR_NOT_SUPPORTED);
	n = load_live(gpu, &procs);
	for (i = 0; i < n; i++)
		if (procs[i].contexts > 0)
			procs[k++] = procs[i];
	if (samples == NULL || *count < k) {
		*count = k;
		free(procs);
		return leave(NVML_ERROR_INSUFFICIENT_SIZE);
	}
	/* Sample timestamps are CPU (wall-clock) time in microseconds. */
	clock_gettime(CLOCK_REALTIME, &ts);
	stamp = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
	for (i = 0; i < (int)k; i++) {
		samples[i].pid = (unsigned)procs[i].pid;
		samples[i].timestamp = stamp;
		samples[i].sm_util = (unsigned)fn_duty(&procs[i], now);
		samples[i].mem_util = 0;
		samples[i].enc_util = 0;
		samples[i].dec_util = 0;
	}
	*count = k;
	free(procs);
	return leave(NVML_SUCCESS);
}
#endif

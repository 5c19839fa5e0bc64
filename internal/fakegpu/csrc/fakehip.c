/*
 * fakehip.c - a fake HIP runtime (libamdhip64) for tests.
 *
 * It implements the small part of the HIP runtime API keepgpu uses,
 * against the simulated node of fakenode.h and fakeamd.h. No memory or
 * kernels are real: allocations are bookkeeping, and a memset issued with
 * hipMemsetAsync occupies its stream for bytes / FH_BYTES_PER_NS
 * nanoseconds, published as a kernel interval so that the fake ROCm SMI
 * (and the fake NVML) see the process's activity and memory.
 *
 * A process appears in its GPU's records once it allocates memory or
 * creates a stream there (when the real runtime creates its KFD queues),
 * and leaves them once it has freed every allocation and destroyed every
 * stream there: the tests' proof that a holder gave everything back
 * explicitly. (The real KFD knows the process until it exits.)
 *
 * All declarations below are our own; only the ABI (function signatures
 * and numeric values) follows AMD's public hip_runtime_api.h.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdint.h>
#include <strings.h>

#include "fakenode.h"
#include "fakeamd.h"

typedef int hipError_t;
typedef void *hipStream_t;
typedef void *hipEvent_t;
typedef struct {
	char bytes[16];
} hipUUID;

enum {
	hipSuccess = 0,
	hipErrorInvalidValue = 1,
	hipErrorOutOfMemory = 2,
	hipErrorNotInitialized = 3,
	hipErrorNoDevice = 100,
	hipErrorInvalidDevice = 101,
	hipErrorInvalidHandle = 400,
	hipErrorNotReady = 600,
	hipErrorUnknown = 999,
};

/* The simulated speed of a memset: 1000 bytes per ns, 1 TB/s. */
#define FH_BYTES_PER_NS 1000
#define FH_VERSION 60342134 /* 6.3.42134 */
#define FH_PTR_BASE 0x7f0000000000ULL
#define FH_PTR_ALIGN (2ULL << 20)

struct fh_alloc {
	uintptr_t ptr;
	size_t size;
	int phys;
	struct fh_alloc *next;
};

struct fh_stream {
	int phys;
	int64_t last_end;
	struct fh_stream *next;
};

struct fh_event {
	int recorded;
	int64_t at;
	struct fh_event *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static int ndev;
static int phys_of[FN_MAX_GPUS];
static struct fn_proc own[FN_MAX_GPUS];
static struct fh_alloc *allocs;
static struct fh_stream *streams;
static struct fh_event *events;
static int64_t device_end[FN_MAX_GPUS]; /* end of the last work per GPU */
static int dirty[FN_MAX_GPUS];          /* own[i] changed since published */
static uintptr_t next_ptr = FH_PTR_BASE;

/* The calling thread's current device (a HIP ordinal), 0 by default. */
static __thread int current;

static hipError_t leave(hipError_t rc)
{
	pthread_mutex_unlock(&mu);
	return rc;
}

static void publish(int phys)
{
	own[phys].pid = (int)getpid();
	fn_proc_store(phys, &own[phys]);
}

/* use marks this process as a compute process of a physical GPU. */
static void use(int phys)
{
	if (own[phys].contexts == 0) {
		own[phys].contexts = 1;
		publish(phys);
	}
}

static unsigned long long used_bytes(int phys)
{
	struct fn_proc *procs;
	int i, n, self = (int)getpid();
	unsigned long long sum = own[phys].bytes;

	n = fn_load_procs(phys, &procs);
	for (i = 0; i < n; i++)
		if (procs[i].pid != self && fn_pid_alive(procs[i].pid))
			sum += procs[i].bytes;
	free(procs);
	return sum;
}

static struct fh_alloc *find_alloc(uintptr_t p, size_t n)
{
	struct fh_alloc *a;

	for (a = allocs; a != NULL; a = a->next)
		if (p >= a->ptr && p - a->ptr <= a->size && n <= a->size - (p - a->ptr))
			return a;
	return NULL;
}

static void sleep_until(int64_t end)
{
	struct timespec ts;

	ts.tv_sec = end / 1000000000LL;
	ts.tv_nsec = end % 1000000000LL;
	while (fn_now_ns() < end && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/*
 * record_work adds [start, end) to the GPU's record, merging it into the
 * previous interval when it follows it directly. The record is published
 * at the next event record or synchronisation (flush), as writing a file
 * per memset would take longer than the simulated memset.
 */
static void record_work(int phys, int64_t start, int64_t end)
{
	struct fn_proc *p = &own[phys];

	p->launches++;
	if (p->nkernels > 0 && p->kernels[p->nkernels - 1].end >= start) {
		if (end > p->kernels[p->nkernels - 1].end)
			p->kernels[p->nkernels - 1].end = end;
	} else {
		if (p->nkernels == FN_MAX_KERNELS) {
			memmove(p->kernels, p->kernels + 1, (FN_MAX_KERNELS - 1) * sizeof p->kernels[0]);
			p->nkernels--;
		}
		p->kernels[p->nkernels].start = start;
		p->kernels[p->nkernels].end = end;
		p->nkernels++;
	}
	if (end > device_end[phys])
		device_end[phys] = end;
	dirty[phys] = 1;
}

/* flush publishes the records record_work changed. */
static void flush(void)
{
	int i;

	for (i = 0; i < FN_MAX_GPUS; i++)
		if (dirty[i]) {
			dirty[i] = 0;
			publish(i);
		}
}

/* ------------------------------------------------------------- init */

/* init reads the node once; called with the lock held. */
static hipError_t init(void)
{
	int code;

	if (fn_init_error("hip_init_error", &code) && code != hipSuccess)
		return code;
	if (!initialized) {
		ndev = fa_visible(phys_of);
		initialized = 1;
	}
	return hipSuccess;
}

/*
 * hipInit answers hipErrorInvalidDevice when there is no GPU, as ROCm
 * 5.2's does; hipGetDeviceCount then answers hipErrorNoDevice.
 */
hipError_t hipInit(unsigned flags)
{
	hipError_t rc;

	(void)flags;
	pthread_mutex_lock(&mu);
	rc = init();
	if (rc == hipSuccess && ndev == 0)
		rc = hipErrorInvalidDevice;
	return leave(rc);
}

/*
 * enter_init takes the lock and initialises the fake on first use, as the
 * runtime does: callers always leave().
 */
static hipError_t enter_init(void)
{
	pthread_mutex_lock(&mu);
	return init();
}

hipError_t hipDriverGetVersion(int *v)
{
	if (v == NULL)
		return hipErrorInvalidValue;
	*v = FH_VERSION;
	return hipSuccess;
}

hipError_t hipRuntimeGetVersion(int *v)
{
	return hipDriverGetVersion(v);
}

static const struct {
	hipError_t code;
	const char *name, *text;
} errors[] = {
	{hipSuccess, "hipSuccess", "no error"},
	{hipErrorInvalidValue, "hipErrorInvalidValue", "invalid argument"},
	{hipErrorOutOfMemory, "hipErrorOutOfMemory", "out of memory"},
	{hipErrorNotInitialized, "hipErrorNotInitialized", "initialization error"},
	{hipErrorNoDevice, "hipErrorNoDevice", "no ROCm-capable device is detected"},
	{hipErrorInvalidDevice, "hipErrorInvalidDevice", "invalid device ordinal"},
	{hipErrorInvalidHandle, "hipErrorInvalidHandle", "invalid resource handle"},
	{hipErrorNotReady, "hipErrorNotReady", "device not ready"},
	{hipErrorUnknown, "hipErrorUnknown", "unknown error"},
};

const char *hipGetErrorName(hipError_t e)
{
	size_t i;

	for (i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == e)
			return errors[i].name;
	return "hipErrorUnknown";
}

const char *hipGetErrorString(hipError_t e)
{
	size_t i;

	for (i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == e)
			return errors[i].text;
	return "unknown error";
}

/* ---------------------------------------------------------- devices */

hipError_t hipGetDeviceCount(int *count)
{
	hipError_t rc = enter_init();

	if (rc != hipSuccess)
		return leave(rc);
	if (count == NULL)
		return leave(hipErrorInvalidValue);
	*count = ndev;
	return leave(ndev == 0 ? hipErrorNoDevice : hipSuccess);
}

static int dev_phys(int dev)
{
	return dev >= 0 && dev < ndev ? phys_of[dev] : -1;
}

hipError_t hipSetDevice(int dev)
{
	hipError_t rc = enter_init();

	if (rc != hipSuccess)
		return leave(rc);
	if (dev_phys(dev) < 0)
		return leave(hipErrorInvalidDevice);
	current = dev;
	return leave(hipSuccess);
}

hipError_t hipSetDeviceFlags(unsigned flags)
{
	hipError_t rc = enter_init();

	if (rc != hipSuccess)
		return leave(rc);
	if (flags & ~0x1fU)
		return leave(hipErrorInvalidValue);
	return leave(ndev == 0 ? hipErrorInvalidDevice : hipSuccess);
}

hipError_t hipDeviceGetName(char *name, int len, int dev)
{
	hipError_t rc = enter_init();
	int phys = dev_phys(dev);

	if (rc != hipSuccess)
		return leave(rc);
	if (name == NULL || len <= 0)
		return leave(hipErrorInvalidValue);
	if (phys < 0)
		return leave(hipErrorInvalidDevice);
	fn_gpu_name(phys, name, (size_t)len);
	return leave(hipSuccess);
}

hipError_t hipDeviceGetPCIBusId(char *id, int len, int dev)
{
	hipError_t rc = enter_init();
	int phys = dev_phys(dev);
	unsigned d, b, s, f;

	if (rc != hipSuccess)
		return leave(rc);
	if (id == NULL || len <= 0)
		return leave(hipErrorInvalidValue);
	if (phys < 0)
		return leave(hipErrorInvalidDevice);
	if (fa_pci(phys, &d, &b, &s, &f) != 0)
		return leave(hipErrorUnknown);
	snprintf(id, (size_t)len, "%04x:%02x:%02x.%x", d, b, s, f);
	return leave(hipSuccess);
}

#ifndef FAKEHIP_HIDE_hipDeviceGetUuid
/* hipDeviceGetUuid fills the 16 ASCII hex digits of the unique id, as
 * ROCr's agent UUID "GPU-<digits>" does; "XX" for a card without one. */
hipError_t hipDeviceGetUuid(hipUUID *uuid, int dev)
{
	hipError_t rc = enter_init();
	int phys = dev_phys(dev);
	unsigned long long id;
	char buf[17];

	if (rc != hipSuccess)
		return leave(rc);
	if (uuid == NULL)
		return leave(hipErrorInvalidValue);
	if (phys < 0)
		return leave(hipErrorInvalidDevice);
	memset(uuid->bytes, 0, sizeof uuid->bytes);
	if (!fa_unique_id(phys, &id)) {
		memcpy(uuid->bytes, "XX", 2);
		return leave(hipSuccess);
	}
	snprintf(buf, sizeof buf, "%016llx", id);
	memcpy(uuid->bytes, buf, 16);
	return leave(hipSuccess);
}
#endif

hipError_t hipDeviceTotalMem(size_t *bytes, int dev)
{
	hipError_t rc = enter_init();
	int phys = dev_phys(dev);

	if (rc != hipSuccess)
		return leave(rc);
	if (bytes == NULL)
		return leave(hipErrorInvalidValue);
	if (phys < 0)
		return leave(hipErrorInvalidDevice);
	*bytes = (size_t)fn_gpu_total(phys);
	return leave(hipSuccess);
}

/*
 * enter_current takes the lock, as enter_init, and stores the current
 * device's physical GPU in *phys.
 */
static hipError_t enter_current(int *phys)
{
	hipError_t rc = enter_init();

	if (rc != hipSuccess)
		return rc;
	*phys = dev_phys(current);
	return *phys < 0 ? hipErrorInvalidDevice : hipSuccess;
}

/* ----------------------------------------------------------- memory */

hipError_t hipMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
	int phys;
	hipError_t rc = enter_current(&phys);
	unsigned long long total, used;

	if (rc != hipSuccess)
		return leave(rc);
	total = fn_gpu_total(phys);
	used = used_bytes(phys);
	if (free_bytes != NULL)
		*free_bytes = (size_t)(used >= total ? 0 : total - used);
	if (total_bytes != NULL)
		*total_bytes = (size_t)total;
	return leave(hipSuccess);
}

hipError_t hipMalloc(void **ptr, size_t size)
{
	int phys;
	hipError_t rc = enter_current(&phys);
	unsigned long long total, used;
	struct fh_alloc *a;

	if (rc != hipSuccess)
		return leave(rc);
	if (ptr == NULL)
		return leave(hipErrorInvalidValue);
	if (size == 0) {
		*ptr = NULL;
		return leave(hipSuccess);
	}
	total = fn_gpu_total(phys);
	used = used_bytes(phys);
	if (used > total || size > total - used)
		return leave(hipErrorOutOfMemory);
	a = malloc(sizeof *a);
	if (a == NULL)
		return leave(hipErrorOutOfMemory);
	a->ptr = next_ptr;
	a->size = size;
	a->phys = phys;
	a->next = allocs;
	allocs = a;
	next_ptr += (size + FH_PTR_ALIGN - 1) / FH_PTR_ALIGN * FH_PTR_ALIGN + FH_PTR_ALIGN;
	own[phys].bytes += size;
	own[phys].contexts = 1;
	publish(phys);
	*ptr = (void *)a->ptr;
	return leave(hipSuccess);
}

/* idle drops this process from a GPU's records when nothing of it is left there. */
static void idle(int phys)
{
	struct fh_alloc *a;
	struct fh_stream *s;

	for (a = allocs; a != NULL; a = a->next)
		if (a->phys == phys)
			return;
	for (s = streams; s != NULL; s = s->next)
		if (s->phys == phys)
			return;
	own[phys].contexts = 0;
	publish(phys);
}

hipError_t hipFree(void *ptr)
{
	hipError_t rc = enter_init();
	struct fh_alloc *a, **pp;

	if (rc != hipSuccess)
		return leave(rc);
	if (ptr == NULL)
		return leave(hipSuccess);
	for (pp = &allocs; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->ptr == (uintptr_t)ptr) {
			a = *pp;
			*pp = a->next;
			own[a->phys].bytes -= a->size;
			publish(a->phys);
			idle(a->phys);
			free(a);
			return leave(hipSuccess);
		}
	return leave(hipErrorInvalidValue);
}

hipError_t hipMemset(void *dst, int value, size_t n)
{
	int phys;
	hipError_t rc = enter_current(&phys);

	(void)value;
	if (rc != hipSuccess)
		return leave(rc);
	if (find_alloc((uintptr_t)dst, n) == NULL)
		return leave(hipErrorInvalidValue);
	return leave(hipSuccess);
}

static struct fh_stream *find_stream(hipStream_t s)
{
	struct fh_stream *p;

	for (p = streams; p != NULL; p = p->next)
		if ((void *)p == s)
			return p;
	return NULL;
}

static struct fh_event *find_event(hipEvent_t e)
{
	struct fh_event *p;

	for (p = events; p != NULL; p = p->next)
		if ((void *)p == e)
			return p;
	return NULL;
}

hipError_t hipMemsetAsync(void *dst, int value, size_t n, hipStream_t stream)
{
	int phys;
	hipError_t rc = enter_current(&phys);
	struct fh_stream *s;
	struct fh_alloc *a;
	int64_t now, start, end;

	(void)value;
	if (rc != hipSuccess)
		return leave(rc);
	a = find_alloc((uintptr_t)dst, n);
	if (a == NULL)
		return leave(hipErrorInvalidValue);
	s = find_stream(stream);
	if (stream != NULL && s == NULL)
		return leave(hipErrorInvalidHandle);
	now = fn_now_ns();
	start = s != NULL ? s->last_end : device_end[a->phys];
	if (start < now)
		start = now;
	end = start + (int64_t)(n / FH_BYTES_PER_NS);
	if (s != NULL)
		s->last_end = end;
	use(a->phys);
	record_work(a->phys, start, end);
	return leave(hipSuccess);
}

hipError_t hipDeviceSynchronize(void)
{
	int phys;
	hipError_t rc = enter_current(&phys);
	int64_t end;

	if (rc != hipSuccess)
		return leave(rc);
	end = device_end[phys];
	flush();
	leave(hipSuccess);
	sleep_until(end);
	return hipSuccess;
}

/* ---------------------------------------------------- streams, events */

hipError_t hipStreamCreateWithFlags(hipStream_t *stream, unsigned flags)
{
	int phys;
	hipError_t rc = enter_current(&phys);
	struct fh_stream *s;

	(void)flags;
	if (rc != hipSuccess)
		return leave(rc);
	if (stream == NULL)
		return leave(hipErrorInvalidValue);
	s = calloc(1, sizeof *s);
	if (s == NULL)
		return leave(hipErrorOutOfMemory);
	s->phys = phys;
	s->next = streams;
	streams = s;
	use(phys);
	*stream = s;
	return leave(hipSuccess);
}

hipError_t hipStreamDestroy(hipStream_t stream)
{
	hipError_t rc = enter_init();
	struct fh_stream **pp, *s;

	if (rc != hipSuccess)
		return leave(rc);
	for (pp = &streams; *pp != NULL; pp = &(*pp)->next)
		if ((void *)*pp == stream) {
			s = *pp;
			*pp = s->next;
			idle(s->phys);
			free(s);
			return leave(hipSuccess);
		}
	return leave(hipErrorInvalidHandle);
}

hipError_t hipEventCreateWithFlags(hipEvent_t *event, unsigned flags)
{
	hipError_t rc = enter_init();
	struct fh_event *e;

	if (rc != hipSuccess)
		return leave(rc);
	if (event == NULL || (flags & ~0xfU))
		return leave(hipErrorInvalidValue);
	e = calloc(1, sizeof *e);
	if (e == NULL)
		return leave(hipErrorOutOfMemory);
	e->next = events;
	events = e;
	*event = e;
	return leave(hipSuccess);
}

hipError_t hipEventRecord(hipEvent_t event, hipStream_t stream)
{
	hipError_t rc = enter_init();
	struct fh_event *e;
	struct fh_stream *s;
	int64_t now = fn_now_ns();

	if (rc != hipSuccess)
		return leave(rc);
	e = find_event(event);
	s = find_stream(stream);
	if (e == NULL || (stream != NULL && s == NULL))
		return leave(hipErrorInvalidHandle);
	e->recorded = 1;
	e->at = s != NULL && s->last_end > now ? s->last_end : now;
	flush();
	return leave(hipSuccess);
}

hipError_t hipEventSynchronize(hipEvent_t event)
{
	hipError_t rc = enter_init();
	struct fh_event *e;
	int64_t at;

	if (rc != hipSuccess)
		return leave(rc);
	e = find_event(event);
	if (e == NULL)
		return leave(hipErrorInvalidHandle);
	at = e->recorded ? e->at : 0;
	flush();
	leave(hipSuccess);
	sleep_until(at);
	return hipSuccess;
}

hipError_t hipEventElapsedTime(float *ms, hipEvent_t start, hipEvent_t stop)
{
	hipError_t rc = enter_init();
	struct fh_event *a, *b;

	if (rc != hipSuccess)
		return leave(rc);
	a = find_event(start);
	b = find_event(stop);
	if (ms == NULL)
		return leave(hipErrorInvalidValue);
	if (a == NULL || b == NULL || !a->recorded || !b->recorded)
		return leave(hipErrorInvalidHandle);
	if (fn_now_ns() < b->at)
		return leave(hipErrorNotReady);
	*ms = (float)(b->at - a->at) / 1e6f;
	return leave(hipSuccess);
}

hipError_t hipEventDestroy(hipEvent_t event)
{
	hipError_t rc = enter_init();
	struct fh_event **pp, *e;

	if (rc != hipSuccess)
		return leave(rc);
	for (pp = &events; *pp != NULL; pp = &(*pp)->next)
		if ((void *)*pp == event) {
			e = *pp;
			*pp = e->next;
			free(e);
			return leave(hipSuccess);
		}
	return leave(hipErrorInvalidHandle);
}

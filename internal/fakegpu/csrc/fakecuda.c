/*
 * fakecuda.c - a fake libcuda.so.1 (CUDA driver API) for tests.
 *
 * It implements the small part of the driver API keepgpu uses, against
 * the simulated node described in fakenode.h. No GPU memory or kernels are
 * real: allocations are bookkeeping, and a "kernel" is an interval of time
 * whose length is the kernel's first parameter, a u64 nanosecond count.
 * A kernel whose entry declares a second parameter takes it as the device
 * address of a 32-bit stop word, as keepgpu's keep-alive kernel does: when
 * the word lies in mapped host memory (cuMemHostAlloc with DEVICEMAP) and
 * the host makes it non-zero, the kernel ends early, noticed within
 * STOP_POLL_NS by cuCtxSynchronize, and its recorded interval is cut short.
 * A stop word in device memory never changes (nobody can write it here).
 * gpu<i>/hostmap set to 0 makes cuMemHostAlloc refuse DEVICEMAP, as a driver
 * in confidential-computing mode does.
 *
 * The process publishes what it holds on each physical GPU (contexts,
 * bytes, kernel launches and intervals) in $FAKEGPU_DIR/gpu<i>/procs/<pid>
 * so that the fake NVML, other processes and tests can see it.
 *
 * All declarations below are our own; only the ABI (function signatures
 * and numeric values) follows NVIDIA's driver API.
 */
#define _GNU_SOURCE /* renameat2, strncasecmp */

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <strings.h>

#include "fakenode.h"

/* ------------------------------------------------------------- types */

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct fc_ctx *CUcontext;
typedef struct fc_module *CUmodule;
typedef struct fc_function *CUfunction;
typedef void *CUstream;
typedef struct {
	unsigned char bytes[16];
} CUuuid;

/* Result codes (CUresult values). */
enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INVALID_VALUE = 1,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_INITIALIZED = 3,
	CUDA_ERROR_DEVICES_UNAVAILABLE = 46,
	CUDA_ERROR_NO_DEVICE = 100,
	CUDA_ERROR_INVALID_DEVICE = 101,
	CUDA_ERROR_INVALID_IMAGE = 200,
	CUDA_ERROR_INVALID_CONTEXT = 201,
	CUDA_ERROR_INVALID_PTX = 218,
	CUDA_ERROR_INVALID_HANDLE = 400,
	CUDA_ERROR_NOT_FOUND = 500,
	CUDA_ERROR_ILLEGAL_ADDRESS = 700,
	CUDA_ERROR_NOT_SUPPORTED = 801,
	CUDA_ERROR_UNKNOWN = 999,
};

/* Device attributes cuDeviceGetAttribute supports. */
enum {
	ATTR_MULTIPROCESSOR_COUNT = 16,
	ATTR_COMPUTE_MODE = 20,
	ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
	ATTR_COMPUTE_CAPABILITY_MINOR = 76,
};

/* JIT options cuModuleLoadDataEx understands. */
enum {
	JIT_ERROR_LOG_BUFFER = 5,
	JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
};

/* Compute modes (the same numbers in CUDA and NVML). */
enum {
	COMPUTE_MODE_PROHIBITED = 2,
	COMPUTE_MODE_EXCLUSIVE_PROCESS = 3,
};

#define DRIVER_VERSION 12040
#define MULTIPROCESSOR_COUNT 132

/* Fake device pointers start here and are spaced by at least this much. */
#define PTR_BASE 0x100000000000ULL
#define PTR_ALIGN (2ULL << 20)

/* cuMemHostAlloc flags. */
#define MEMHOSTALLOC_PORTABLE 0x01
#define MEMHOSTALLOC_DEVICEMAP 0x02
#define MEMHOSTALLOC_WRITECOMBINED 0x04

/*
 * How often a synchronising thread looks at the stop word of the kernel it
 * waits for. The real kernel reads it every 10 us on the GPU, where it costs
 * the host nothing; here each look is a wake-up of the host thread.
 */
#define STOP_POLL_NS 1000000LL

/* Limits the real driver puts on launch dimensions. */
#define MAX_THREADS_PER_BLOCK 1024U
#define MAX_GRID_X 2147483647U
#define MAX_GRID_YZ 65535U

/* ---------------------------------------------------------- objects */

/* One cuMemAlloc_v2 allocation. */
struct fc_alloc {
	CUdeviceptr ptr;
	size_t size;
	struct fc_alloc *next;
};

/* One cuMemHostAlloc allocation: real, zeroed, page-aligned host memory. */
struct fc_host {
	void *p;
	size_t size;
	int mapped; /* DEVICEMAP: its device address is its host address */
	struct fc_host *next;
};

/* A function handle; one per (module, name), freed with the module. */
struct fc_function {
	struct fc_module *mod;
	struct fc_function *next;
	int nparams; /* parameters its .entry declares */
	char name[];
};

/* A loaded module: a private copy of its PTX text. */
struct fc_module {
	struct fc_ctx *ctx;
	char *ptx;
	struct fc_function *funcs;
	struct fc_module *next;
};

/* A context on one physical GPU. */
struct fc_ctx {
	unsigned long long id; /* unique for the life of the process */
	int phys;              /* physical GPU index */
	int64_t last_end;      /* end of the last kernel launched on it */
	int64_t last_start;    /* start of that kernel */
	/* That kernel's stop word, if it is in mapped host memory. */
	volatile uint32_t *stop;
	struct fc_alloc *allocs;
	struct fc_host *hosts;
	struct fc_module *mods;
	struct fc_ctx *next;
};

/* ------------------------------------------------------------ state */

/* One lock guards everything below. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int initialized;          /* cuInit succeeded */
static int ndev;                 /* number of visible devices */
static int phys_of[FN_MAX_GPUS]; /* CUDA ordinal -> physical GPU */

/* This process's record on each physical GPU. */
static struct fn_proc own[FN_MAX_GPUS];

static struct fc_ctx *contexts; /* every live context */
static unsigned long long next_ctx_id = 1;
static CUdeviceptr next_ptr = PTR_BASE;

/*
 * The calling thread's current context, by id rather than pointer so that
 * a context destroyed by another thread (and its memory reused) is simply
 * no longer found.
 */
static __thread unsigned long long current_id;

/* enter takes the lock and reports whether cuInit has succeeded. */
static CUresult enter(void)
{
	pthread_mutex_lock(&mu);
	return initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

/* leave drops the lock and passes rc through. */
static CUresult leave(CUresult rc)
{
	pthread_mutex_unlock(&mu);
	return rc;
}

/* --------------------------------------------------------- helpers */

/* dev_phys maps a CUDA ordinal to its physical GPU, or -1. */
static int dev_phys(CUdevice dev)
{
	return (dev >= 0 && dev < ndev) ? phys_of[dev] : -1;
}

static struct fc_ctx *find_ctx(CUcontext c)
{
	struct fc_ctx *p;

	for (p = contexts; p != NULL; p = p->next)
		if (p == c)
			return p;
	return NULL;
}

static struct fc_ctx *current_ctx(void)
{
	struct fc_ctx *p;

	if (current_id == 0)
		return NULL;
	for (p = contexts; p != NULL; p = p->next)
		if (p->id == current_id)
			return p;
	return NULL;
}

static struct fc_module *find_module(CUmodule m)
{
	struct fc_ctx *c;
	struct fc_module *p;

	for (c = contexts; c != NULL; c = c->next)
		for (p = c->mods; p != NULL; p = p->next)
			if (p == m)
				return p;
	return NULL;
}

static struct fc_function *find_function(CUfunction f)
{
	struct fc_ctx *c;
	struct fc_module *m;
	struct fc_function *p;

	for (c = contexts; c != NULL; c = c->next)
		for (m = c->mods; m != NULL; m = m->next)
			for (p = m->funcs; p != NULL; p = p->next)
				if (p == f)
					return p;
	return NULL;
}

/* find_alloc returns the allocation (of any context) holding [ptr, ptr+n). */
static struct fc_alloc *find_alloc(CUdeviceptr ptr, size_t n)
{
	struct fc_ctx *c;
	struct fc_alloc *a;

	for (c = contexts; c != NULL; c = c->next)
		for (a = c->allocs; a != NULL; a = a->next)
			if (ptr >= a->ptr && ptr - a->ptr <= a->size && n <= a->size - (ptr - a->ptr))
				return a;
	return NULL;
}

/* publish writes (or deletes) this process's record for a physical GPU. */
static void publish(int phys)
{
	own[phys].pid = (int)getpid();
	fn_proc_store(phys, &own[phys]);
}

/*
 * used_bytes returns the memory held on a physical GPU by live processes:
 * this one (from memory) plus every other live pid's record.
 */
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

/* other_context_holder reports whether another live pid has a context. */
static int other_context_holder(int phys)
{
	struct fn_proc *procs;
	int i, n, self = (int)getpid(), found = 0;

	n = fn_load_procs(phys, &procs);
	for (i = 0; i < n && !found; i++)
		if (procs[i].pid != self && procs[i].contexts > 0 && fn_pid_alive(procs[i].pid))
			found = 1;
	free(procs);
	return found;
}

/* free_module releases a module and its function handles. */
static void free_module(struct fc_module *m)
{
	struct fc_function *f, *next;

	for (f = m->funcs; f != NULL; f = next) {
		next = f->next;
		free(f);
	}
	free(m->ptx);
	free(m);
}

/* ------------------------------------------- CUDA_VISIBLE_DEVICES */

/*
 * resolve_entry maps one CUDA_VISIBLE_DEVICES entry to a physical GPU, or
 * returns -1. An entry is a decimal ordinal or a "GPU-" UUID, where any
 * prefix that matches exactly one GPU's UUID will do.
 */
static int resolve_entry(const char *e, int total)
{
	char uuid[128];
	size_t len = strlen(e);
	unsigned long long v;
	int i, match = -1;

	if (fn_parse_u64(e, &v) == 0)
		return v < (unsigned long long)total ? (int)v : -1;
	if (strncasecmp(e, "GPU-", 4) != 0)
		return -1;
	for (i = 0; i < total; i++) {
		fn_gpu_uuid(i, uuid, sizeof uuid);
		if (strncasecmp(uuid, e, len) == 0) {
			if (match >= 0)
				return -1; /* ambiguous prefix */
			match = i;
		}
	}
	return match;
}

/*
 * parse_visible fills phys_of and ndev from CUDA_VISIBLE_DEVICES the way
 * the driver does: unset means every GPU; otherwise the list stops at the
 * first entry that is invalid, out of range or a repeat.
 */
static void parse_visible(int total)
{
	const char *env = getenv("CUDA_VISIBLE_DEVICES");
	char buf[4096], *tok, *save = NULL, *end;
	int i, idx;

	ndev = 0;
	if (env == NULL) {
		for (i = 0; i < total; i++)
			phys_of[ndev++] = i;
		return;
	}
	snprintf(buf, sizeof buf, "%s", env);
	/* strtok_r would skip empty entries; an empty entry ends the list. */
	for (tok = buf; tok != NULL && ndev < FN_MAX_GPUS; tok = save) {
		save = strchr(tok, ',');
		if (save != NULL)
			*save++ = '\0';
		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		idx = resolve_entry(tok, total);
		if (idx < 0)
			return;
		for (i = 0; i < ndev; i++)
			if (phys_of[i] == idx)
				return;
		phys_of[ndev++] = idx;
	}
}

/* ------------------------------------------------------ init, errors */

CUresult cuInit(unsigned flags)
{
	int code;
	CUresult rc = CUDA_SUCCESS;

	pthread_mutex_lock(&mu);
	if (flags != 0) {
		rc = CUDA_ERROR_INVALID_VALUE;
	} else if (!initialized) {
		if (fn_init_error("cuda_init_error", &code) && code != CUDA_SUCCESS) {
			rc = code;
		} else {
			parse_visible(fn_device_count());
			if (ndev == 0)
				rc = CUDA_ERROR_NO_DEVICE;
			else
				initialized = 1;
		}
	}
	return leave(rc);
}

CUresult cuDriverGetVersion(int *version)
{
	if (version == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*version = DRIVER_VERSION;
	return CUDA_SUCCESS;
}

static const struct {
	CUresult code;
	const char *name;
	const char *text;
} errors[] = {
	{CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
	{CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{CUDA_ERROR_DEVICES_UNAVAILABLE, "CUDA_ERROR_DEVICES_UNAVAILABLE",
	 "CUDA-capable device(s) is/are busy or unavailable"},
	{CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
	 "an illegal memory access was encountered"},
	{CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	{CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

/* lookup_error sets *s to the name or text of err; unknown codes fail. */
static CUresult lookup_error(CUresult err, const char **s, int text)
{
	size_t i;

	if (s == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	for (i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == err) {
			*s = text ? errors[i].text : errors[i].name;
			return CUDA_SUCCESS;
		}
	*s = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorName(CUresult err, const char **name)
{
	return lookup_error(err, name, 0);
}

CUresult cuGetErrorString(CUresult err, const char **text)
{
	return lookup_error(err, text, 1);
}

/* ----------------------------------------------------------- devices */

CUresult cuDeviceGetCount(int *count)
{
	CUresult rc = enter();

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (count == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	*count = ndev;
	return leave(CUDA_SUCCESS);
}

CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
	CUresult rc = enter();

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (dev == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (dev_phys(ordinal) < 0)
		return leave(CUDA_ERROR_INVALID_DEVICE);
	*dev = ordinal;
	return leave(CUDA_SUCCESS);
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
	char buf[256];
	CUresult rc = enter();
	int phys = dev_phys(dev);

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (name == NULL || len <= 0)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (phys < 0)
		return leave(CUDA_ERROR_INVALID_DEVICE);
	fn_gpu_name(phys, buf, sizeof buf);
	snprintf(name, (size_t)len, "%s", buf);
	return leave(CUDA_SUCCESS);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* uuid_bytes turns "GPU-xxxxxxxx-xxxx-..." into 16 raw bytes. */
static void uuid_bytes(const char *s, unsigned char out[16])
{
	int nibble = 0, v;

	memset(out, 0, 16);
	if (strncasecmp(s, "GPU-", 4) == 0)
		s += 4;
	for (; *s != '\0' && nibble < 32; s++) {
		v = hex_value(*s);
		if (v < 0)
			continue; /* dashes */
		out[nibble / 2] |= (unsigned char)(nibble % 2 ? v : v << 4);
		nibble++;
	}
}

CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
	char buf[128];
	CUresult rc = enter();
	int phys = dev_phys(dev);

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (uuid == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (phys < 0)
		return leave(CUDA_ERROR_INVALID_DEVICE);
	fn_gpu_uuid(phys, buf, sizeof buf);
	uuid_bytes(buf, uuid->bytes);
	return leave(CUDA_SUCCESS);
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
	return cuDeviceGetUuid(uuid, dev);
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	CUresult rc = enter();
	int phys = dev_phys(dev);

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (bytes == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (phys < 0)
		return leave(CUDA_ERROR_INVALID_DEVICE);
	*bytes = (size_t)fn_gpu_total(phys);
	return leave(CUDA_SUCCESS);
}

CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice dev)
{
	CUresult rc = enter();
	int phys = dev_phys(dev), major, minor;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (value == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (phys < 0)
		return leave(CUDA_ERROR_INVALID_DEVICE);
	switch (attrib) {
	case ATTR_COMPUTE_CAPABILITY_MAJOR:
	case ATTR_COMPUTE_CAPABILITY_MINOR:
		fn_gpu_cc(phys, &major, &minor);
		*value = attrib == ATTR_COMPUTE_CAPABILITY_MAJOR ? major : minor;
		break;
	case ATTR_MULTIPROCESSOR_COUNT:
		*value = MULTIPROCESSOR_COUNT;
		break;
	case ATTR_COMPUTE_MODE:
		*value = fn_gpu_compute_mode(phys);
		break;
	default:
		return leave(CUDA_ERROR_INVALID_VALUE);
	}
	return leave(CUDA_SUCCESS);
}

/* ---------------------------------------------------------- contexts */

CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned flags, CUdevice dev)
{
	CUresult rc = enter();
	int phys = dev_phys(dev), mode;
	struct fc_ctx *c;

	(void)flags;
	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (pctx == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (phys < 0)
		return leave(CUDA_ERROR_INVALID_DEVICE);
	mode = fn_gpu_compute_mode(phys);
	if (mode == COMPUTE_MODE_PROHIBITED)
		return leave(CUDA_ERROR_DEVICES_UNAVAILABLE);
	if (mode == COMPUTE_MODE_EXCLUSIVE_PROCESS && other_context_holder(phys))
		return leave(CUDA_ERROR_DEVICES_UNAVAILABLE);

	c = calloc(1, sizeof *c);
	if (c == NULL)
		return leave(CUDA_ERROR_OUT_OF_MEMORY);
	c->id = next_ctx_id++;
	c->phys = phys;
	c->next = contexts;
	contexts = c;
	own[phys].contexts++;
	publish(phys);

	current_id = c->id;
	*pctx = c;
	return leave(CUDA_SUCCESS);
}

CUresult cuCtxDestroy_v2(CUcontext ctx)
{
	CUresult rc = enter();
	struct fc_ctx *c, **pp;
	struct fc_alloc *a, *an;
	struct fc_module *m, *mn;
	struct fc_host *h, *hn;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = find_ctx(ctx);
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);

	for (pp = &contexts; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	for (a = c->allocs; a != NULL; a = an) {
		an = a->next;
		own[c->phys].bytes -= a->size;
		free(a);
	}
	for (m = c->mods; m != NULL; m = mn) {
		mn = m->next;
		free_module(m);
	}
	for (h = c->hosts; h != NULL; h = hn) {
		hn = h->next;
		free(h->p);
		free(h);
	}
	own[c->phys].contexts--;
	publish(c->phys);

	if (current_id == c->id)
		current_id = 0;
	free(c);
	return leave(CUDA_SUCCESS);
}

CUresult cuCtxSetCurrent(CUcontext ctx)
{
	CUresult rc = enter();
	struct fc_ctx *c;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (ctx == NULL) {
		current_id = 0;
		return leave(CUDA_SUCCESS);
	}
	c = find_ctx(ctx);
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	current_id = c->id;
	return leave(CUDA_SUCCESS);
}

CUresult cuCtxGetCurrent(CUcontext *pctx)
{
	CUresult rc = enter();

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (pctx == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	*pctx = current_ctx();
	return leave(CUDA_SUCCESS);
}

/*
 * cut_kernel ends the context's last kernel at now, in the context and in
 * the process's record, because its stop word was set. Called with the lock.
 */
static void cut_kernel(struct fc_ctx *c, int64_t now)
{
	struct fn_proc *p = &own[c->phys];
	int i;

	if (now >= c->last_end)
		return;
	if (now < c->last_start)
		now = c->last_start;
	for (i = p->nkernels - 1; i >= 0; i--)
		if (p->kernels[i].start == c->last_start && p->kernels[i].end == c->last_end) {
			p->kernels[i].end = now;
			break;
		}
	c->last_end = now;
	publish(c->phys);
}

/*
 * cuCtxSynchronize sleeps, without the lock, until the last kernel ends. If
 * that kernel has a stop word in mapped host memory, it looks at the word
 * every STOP_POLL_NS and ends the kernel when the word is non-zero.
 */
CUresult cuCtxSynchronize(void)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct timespec ts;
	volatile uint32_t *stop;
	unsigned long long id;
	int64_t end, now, until;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = current_ctx();
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	id = c->id;
	end = c->last_end;
	stop = c->stop;
	leave(CUDA_SUCCESS);

	while ((now = fn_now_ns()) < end) {
		if (stop != NULL && __atomic_load_n(stop, __ATOMIC_ACQUIRE) != 0) {
			enter();
			/* The context may be gone; then so is its kernel. */
			c = current_ctx();
			if (c != NULL && c->id == id && c->last_end == end)
				cut_kernel(c, now);
			leave(CUDA_SUCCESS);
			break;
		}
		until = stop != NULL && now + STOP_POLL_NS < end ? now + STOP_POLL_NS : end;
		ts.tv_sec = until / 1000000000LL;
		ts.tv_nsec = until % 1000000000LL;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	return CUDA_SUCCESS;
}

/* ------------------------------------------------------------ memory */

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct fc_alloc *a;
	unsigned long long total, used;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = current_ctx();
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	if (dptr == NULL || size == 0)
		return leave(CUDA_ERROR_INVALID_VALUE);
	total = fn_gpu_total(c->phys);
	used = used_bytes(c->phys);
	if (used > total || size > total - used)
		return leave(CUDA_ERROR_OUT_OF_MEMORY);

	a = malloc(sizeof *a);
	if (a == NULL)
		return leave(CUDA_ERROR_OUT_OF_MEMORY);
	a->ptr = next_ptr;
	a->size = size;
	a->next = c->allocs;
	c->allocs = a;
	/* Leave a gap so that pointers into different allocations differ. */
	next_ptr += (size + PTR_ALIGN - 1) / PTR_ALIGN * PTR_ALIGN + PTR_ALIGN;
	own[c->phys].bytes += size;
	publish(c->phys);

	*dptr = a->ptr;
	return leave(CUDA_SUCCESS);
}

CUresult cuMemFree_v2(CUdeviceptr ptr)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct fc_alloc *a, **pp;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (current_ctx() == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	/* Any context's allocation may be freed (unified addressing). */
	for (c = contexts; c != NULL; c = c->next)
		for (pp = &c->allocs; *pp != NULL; pp = &(*pp)->next)
			if ((*pp)->ptr == ptr) {
				a = *pp;
				*pp = a->next;
				own[c->phys].bytes -= a->size;
				publish(c->phys);
				free(a);
				return leave(CUDA_SUCCESS);
			}
	return leave(CUDA_ERROR_INVALID_VALUE);
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n)
{
	CUresult rc = enter();

	(void)value;
	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (current_ctx() == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	if (find_alloc(dst, n) == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	return leave(CUDA_SUCCESS);
}

/* find_host returns the host allocation (of any context) holding [p, p+n). */
static struct fc_host *find_host(uintptr_t p, size_t n)
{
	struct fc_ctx *c;
	struct fc_host *h;
	uintptr_t base;

	for (c = contexts; c != NULL; c = c->next)
		for (h = c->hosts; h != NULL; h = h->next) {
			base = (uintptr_t)h->p;
			if (p >= base && p - base <= h->size && n <= h->size - (p - base))
				return h;
		}
	return NULL;
}

CUresult cuMemHostAlloc(void **pp, size_t size, unsigned flags)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct fc_host *h;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = current_ctx();
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	if (pp == NULL || size == 0 ||
	    (flags & ~(unsigned)(MEMHOSTALLOC_PORTABLE | MEMHOSTALLOC_DEVICEMAP | MEMHOSTALLOC_WRITECOMBINED)) != 0)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if ((flags & MEMHOSTALLOC_DEVICEMAP) && fn_gpu_u64(c->phys, "hostmap", 1) == 0)
		return leave(CUDA_ERROR_NOT_SUPPORTED);
	h = calloc(1, sizeof *h);
	if (h == NULL || posix_memalign(&h->p, 4096, size) != 0) {
		free(h);
		return leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	memset(h->p, 0, size);
	h->size = size;
	h->mapped = (flags & MEMHOSTALLOC_DEVICEMAP) != 0;
	h->next = c->hosts;
	c->hosts = h;
	*pp = h->p;
	return leave(CUDA_SUCCESS);
}

CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *dptr, void *p, unsigned flags)
{
	CUresult rc = enter();
	struct fc_host *h;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (current_ctx() == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	if (dptr == NULL || flags != 0)
		return leave(CUDA_ERROR_INVALID_VALUE);
	h = find_host((uintptr_t)p, 1);
	if (h == NULL || !h->mapped)
		return leave(CUDA_ERROR_INVALID_VALUE);
	/* Unified addressing: the device sees it at the host's address. */
	*dptr = (CUdeviceptr)(uintptr_t)p;
	return leave(CUDA_SUCCESS);
}

CUresult cuMemFreeHost(void *p)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct fc_host *h, **pp;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (current_ctx() == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	for (c = contexts; c != NULL; c = c->next)
		for (pp = &c->hosts; *pp != NULL; pp = &(*pp)->next)
			if ((*pp)->p == p) {
				h = *pp;
				*pp = h->next;
				free(h->p);
				free(h);
				return leave(CUDA_SUCCESS);
			}
	return leave(CUDA_ERROR_INVALID_VALUE);
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	unsigned long long total, used;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = current_ctx();
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	total = fn_gpu_total(c->phys);
	used = used_bytes(c->phys);
	if (free_bytes != NULL)
		*free_bytes = (size_t)(used >= total ? 0 : total - used);
	if (total_bytes != NULL)
		*total_bytes = (size_t)total;
	return leave(CUDA_SUCCESS);
}

/* ----------------------------------------------------------- modules */

static int is_ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '$';
}

/*
 * ptx_has_entry reports whether the PTX declares ".entry <name>" followed
 * by '(' or whitespace; with name NULL, whether it declares any entry.
 */
static int ptx_has_entry(const char *ptx, const char *name)
{
	const char *p = ptx;
	size_t len = name != NULL ? strlen(name) : 0;

	while ((p = strstr(p, ".entry")) != NULL) {
		p += strlen(".entry");
		if (!isspace((unsigned char)*p))
			continue;
		while (isspace((unsigned char)*p))
			p++;
		if (name == NULL) {
			if (is_ident_char(*p))
				return 1;
		} else if (len > 0 && strncmp(p, name, len) == 0 &&
			   (p[len] == '(' || isspace((unsigned char)p[len]))) {
			return 1;
		}
	}
	return 0;
}

/*
 * ptx_entry_params returns how many parameters ".entry <name>(...)"
 * declares in the PTX (0 if it has no parameter list or is not there).
 */
static int ptx_entry_params(const char *ptx, const char *name)
{
	const char *p = ptx, *end;
	size_t len = strlen(name);
	int n = 0;

	while ((p = strstr(p, ".entry")) != NULL) {
		p += strlen(".entry");
		while (isspace((unsigned char)*p))
			p++;
		if (strncmp(p, name, len) != 0 || is_ident_char(p[len]))
			continue;
		p += len;
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '(' || (end = strchr(p, ')')) == NULL)
			return 0;
		while ((p = strstr(p, ".param")) != NULL && p < end) {
			n++;
			p += strlen(".param");
		}
		return n;
	}
	return 0;
}

/* ptx_problem returns why the PTX would not compile, or NULL if it would. */
static const char *ptx_problem(const char *ptx)
{
	if (strstr(ptx, ".version") == NULL)
		return "ptxas fatal   : fake driver: no .version directive in PTX";
	if (strstr(ptx, ".target") == NULL)
		return "ptxas fatal   : fake driver: no .target directive in PTX";
	if (!ptx_has_entry(ptx, NULL))
		return "ptxas fatal   : fake driver: no .entry in PTX";
	return NULL;
}

/*
 * write_jit_log copies msg into the caller's CU_JIT_ERROR_LOG_BUFFER, if
 * it passed one with a size, and writes back the number of bytes used
 * (not counting the terminating NUL) in the size option's slot.
 */
static void write_jit_log(unsigned n, const int *options, void **values, const char *msg)
{
	char *buf = NULL;
	size_t size = 0, used;
	int size_slot = -1;
	unsigned i;

	if (options == NULL || values == NULL)
		return;
	for (i = 0; i < n; i++) {
		if (options[i] == JIT_ERROR_LOG_BUFFER) {
			buf = values[i];
		} else if (options[i] == JIT_ERROR_LOG_BUFFER_SIZE_BYTES) {
			size = (size_t)(uintptr_t)values[i];
			size_slot = (int)i;
		}
	}
	if (buf == NULL || size_slot < 0 || size == 0)
		return;
	snprintf(buf, size, "%s", msg);
	used = strlen(buf);
	values[size_slot] = (void *)(uintptr_t)used;
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned num_options,
			    int *options, void **option_values)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct fc_module *m;
	const char *problem;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = current_ctx();
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	if (module == NULL || image == NULL || (num_options > 0 && (options == NULL || option_values == NULL)))
		return leave(CUDA_ERROR_INVALID_VALUE);

	problem = ptx_problem(image);
	write_jit_log(num_options, options, option_values, problem != NULL ? problem : "");
	if (problem != NULL)
		return leave(CUDA_ERROR_INVALID_PTX);

	m = calloc(1, sizeof *m);
	if (m == NULL || (m->ptx = strdup(image)) == NULL) {
		free(m);
		return leave(CUDA_ERROR_OUT_OF_MEMORY);
	}
	m->ctx = c;
	m->next = c->mods;
	c->mods = m;
	*module = m;
	return leave(CUDA_SUCCESS);
}

CUresult cuModuleGetFunction(CUfunction *func, CUmodule module, const char *name)
{
	CUresult rc = enter();
	struct fc_module *m;
	struct fc_function *f;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	if (func == NULL || name == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);
	m = find_module(module);
	if (m == NULL)
		return leave(CUDA_ERROR_INVALID_HANDLE);
	for (f = m->funcs; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0) {
			*func = f;
			return leave(CUDA_SUCCESS);
		}
	if (!ptx_has_entry(m->ptx, name))
		return leave(CUDA_ERROR_NOT_FOUND);

	f = malloc(sizeof *f + strlen(name) + 1);
	if (f == NULL)
		return leave(CUDA_ERROR_OUT_OF_MEMORY);
	strcpy(f->name, name);
	f->nparams = ptx_entry_params(m->ptx, name);
	f->mod = m;
	f->next = m->funcs;
	m->funcs = f;
	*func = f;
	return leave(CUDA_SUCCESS);
}

CUresult cuModuleUnload(CUmodule module)
{
	CUresult rc = enter();
	struct fc_module *m, **pp;

	if (rc != CUDA_SUCCESS)
		return leave(rc);
	m = find_module(module);
	if (m == NULL)
		return leave(CUDA_ERROR_INVALID_HANDLE);
	for (pp = &m->ctx->mods; *pp != m; pp = &(*pp)->next)
		;
	*pp = m->next;
	free_module(m);
	return leave(CUDA_SUCCESS);
}

/* ----------------------------------------------------------- kernels */

/* record_kernel adds an interval to this process's record of a GPU. */
static void record_kernel(int phys, int64_t start, int64_t end)
{
	struct fn_proc *p = &own[phys];

	if (p->nkernels == FN_MAX_KERNELS) {
		memmove(p->kernels, p->kernels + 1, (FN_MAX_KERNELS - 1) * sizeof p->kernels[0]);
		p->nkernels--;
	}
	p->kernels[p->nkernels].start = start;
	p->kernels[p->nkernels].end = end;
	p->nkernels++;
	p->launches++;
	publish(phys);
}

/*
 * cuLaunchKernel "runs" a kernel that busies the GPU for as many
 * nanoseconds as its first parameter (a u64) says. Kernels on one context
 * run back to back, so it starts when the previous one ends, or now. The
 * launch returns at once; cuCtxSynchronize waits for the end. A second
 * parameter is the device address of the kernel's stop word: one outside
 * every allocation makes the launch fail as the kernel's first read would,
 * with CUDA_ERROR_ILLEGAL_ADDRESS; one already set ends the kernel at once.
 */
CUresult cuLaunchKernel(CUfunction func, unsigned gx, unsigned gy, unsigned gz,
			unsigned bx, unsigned by, unsigned bz, unsigned shared_bytes,
			CUstream stream, void **params, void **extra)
{
	CUresult rc = enter();
	struct fc_ctx *c;
	struct fc_function *f;
	unsigned long long ns, word;
	volatile uint32_t *stop = NULL;
	struct fc_host *h;
	int64_t now, start, end;

	(void)shared_bytes;
	(void)stream;
	(void)extra;
	if (rc != CUDA_SUCCESS)
		return leave(rc);
	c = current_ctx();
	if (c == NULL)
		return leave(CUDA_ERROR_INVALID_CONTEXT);
	f = find_function(func);
	if (f == NULL || f->mod->ctx != c)
		return leave(CUDA_ERROR_INVALID_HANDLE);
	if (gx < 1 || gy < 1 || gz < 1 || bx < 1 || by < 1 || bz < 1 ||
	    gx > MAX_GRID_X || gy > MAX_GRID_YZ || gz > MAX_GRID_YZ ||
	    (unsigned long long)bx * by * bz > MAX_THREADS_PER_BLOCK)
		return leave(CUDA_ERROR_INVALID_VALUE);
	if (params == NULL || params[0] == NULL)
		return leave(CUDA_ERROR_INVALID_VALUE);

	ns = *(const unsigned long long *)params[0];
	if (f->nparams >= 2) {
		if (params[1] == NULL)
			return leave(CUDA_ERROR_INVALID_VALUE);
		word = *(const unsigned long long *)params[1];
		h = find_host((uintptr_t)word, 4);
		if (h != NULL && h->mapped)
			stop = (volatile uint32_t *)(uintptr_t)word;
		else if (find_alloc(word, 4) == NULL)
			return leave(CUDA_ERROR_ILLEGAL_ADDRESS);
	}
	now = fn_now_ns();
	start = c->last_end > now ? c->last_end : now;
	end = ns > (unsigned long long)(INT64_MAX - start) ? INT64_MAX : start + (int64_t)ns;
	if (stop != NULL && __atomic_load_n(stop, __ATOMIC_ACQUIRE) != 0)
		end = start;
	c->last_start = start;
	c->last_end = end;
	c->stop = stop;
	record_kernel(c->phys, start, end);
	return leave(CUDA_SUCCESS);
}

/*
 * fakenode.h - the simulated GPU node shared by the fake libcuda.so.1 and
 * the fake libnvidia-ml.so.1.
 *
 * The node lives in a state directory named by the FAKEGPU_DIR environment
 * variable. Every value is a small text file; a missing file means "use the
 * default". Both libraries re-read the files whenever they need a value, so
 * tests can change the node while processes that use it keep running.
 *
 *   $FAKEGPU_DIR/devices            number of physical GPUs (default 0)
 *   $FAKEGPU_DIR/cuda_init_error    result code cuInit returns, if present
 *   $FAKEGPU_DIR/nvml_init_error    result code nvmlInit* returns, if present
 *   $FAKEGPU_DIR/gpu<i>/<key>       per-GPU properties (see fn_gpu_* below)
 *   $FAKEGPU_DIR/gpu<i>/procs/<pid> one record per process using GPU i
 *
 * A process record holds one "key value" pair per line:
 *
 *   contexts 1
 *   bytes 2147483648
 *   launches 17
 *   kernel <start_ns> <end_ns>      (zero or more, CLOCK_MONOTONIC)
 *
 * Only the fake libcuda writes records, and only its own; tests write
 * records to simulate foreign processes. Writers replace a record
 * atomically (temporary file + rename), so readers skip any name that is
 * not a plain decimal pid.
 *
 * Everything here is "static inline" so that each library gets a private
 * copy and the header can hold helpers only one of the libraries uses
 * without tripping -Wunused-function.
 */
#ifndef FAKEGPU_FAKENODE_H
#define FAKEGPU_FAKENODE_H

/* For renameat2; the including .c file defines it before any #include. */
#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before including any header"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Upper bound on the number of GPUs a node can have. */
#define FN_MAX_GPUS 64

/* How many of a process's most recent kernel intervals a record keeps. */
#define FN_MAX_KERNELS 64

/* The window over which kernel duty (utilization) is measured. */
#define FN_DUTY_WINDOW_NS 1000000000LL

/* Defaults for per-GPU properties. */
#define FN_DEFAULT_TOTAL 85899345920ULL /* 80 GiB */
#define FN_DEFAULT_POWER_MW 70000U
#define FN_DEFAULT_CC_MAJOR 9
#define FN_DEFAULT_CC_MINOR 0

/* One kernel execution interval, CLOCK_MONOTONIC nanoseconds. */
struct fn_interval {
	int64_t start;
	int64_t end;
};

/*
 * A process record. The kernel intervals are kept oldest first; at most
 * FN_MAX_KERNELS of them.
 */
struct fn_proc {
	int pid;
	long long contexts;
	unsigned long long bytes;
	long long launches;
	int nkernels;
	struct fn_interval kernels[FN_MAX_KERNELS];
};

/* ---------------------------------------------------------------- time */

/* fn_now_ns returns CLOCK_MONOTONIC in nanoseconds. */
static inline int64_t fn_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------ files */

/*
 * fn_state_dir returns the state directory, or NULL when FAKEGPU_DIR is
 * unset or empty (a machine with the driver installed but no GPUs).
 */
static inline const char *fn_state_dir(void)
{
	const char *d = getenv("FAKEGPU_DIR");

	return (d != NULL && d[0] != '\0') ? d : NULL;
}

/*
 * fn_path formats a path below the state directory into buf. It returns 0,
 * or -1 when there is no state directory or the path does not fit.
 */
static inline int fn_path(char *buf, size_t size, const char *fmt, ...)
{
	const char *dir = fn_state_dir();
	va_list ap;
	int n, m;

	if (dir == NULL)
		return -1;
	n = snprintf(buf, size, "%s/", dir);
	if (n < 0 || (size_t)n >= size)
		return -1;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, size - n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)(n + m) >= size)
		return -1;
	return 0;
}

/*
 * fn_read_value reads the small file at path into buf (size bytes) with
 * leading and trailing whitespace removed. It returns 0, or -1 if the file
 * cannot be read.
 */
static inline int fn_read_value(const char *path, char *buf, size_t size)
{
	ssize_t n;
	size_t len, start;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	len = (size_t)n;
	buf[len] = '\0';
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
		buf[--len] = '\0';
	for (start = 0; buf[start] != '\0' && strchr(" \t\r\n", buf[start]) != NULL; start++)
		;
	memmove(buf, buf + start, len - start + 1);
	return 0;
}

/* fn_parse_u64 parses a whole decimal string; it returns 0 or -1. */
static inline int fn_parse_u64(const char *s, unsigned long long *out)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	return 0;
}

/* fn_parse_int parses a whole decimal int (sign allowed); 0 or -1. */
static inline int fn_parse_int(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < INT_MIN || v > INT_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

/*
 * fn_node_read reads the node-level file name ("devices", ...) into buf.
 * It returns 0, or -1 if it is missing.
 */
static inline int fn_node_read(const char *name, char *buf, size_t size)
{
	char path[PATH_MAX];

	if (fn_path(path, sizeof path, "%s", name) != 0)
		return -1;
	return fn_read_value(path, buf, size);
}

/* fn_gpu_read reads gpu<i>/<key> into buf; 0, or -1 if it is missing. */
static inline int fn_gpu_read(int gpu, const char *key, char *buf, size_t size)
{
	char path[PATH_MAX];

	if (fn_path(path, sizeof path, "gpu%d/%s", gpu, key) != 0)
		return -1;
	return fn_read_value(path, buf, size);
}

/* fn_gpu_u64 reads gpu<i>/<key> as a number, or returns def. */
static inline unsigned long long fn_gpu_u64(int gpu, const char *key, unsigned long long def)
{
	char buf[64];
	unsigned long long v;

	if (fn_gpu_read(gpu, key, buf, sizeof buf) != 0 || fn_parse_u64(buf, &v) != 0)
		return def;
	return v;
}

/* ------------------------------------------------------ node settings */

/* fn_device_count returns the number of physical GPUs (0..FN_MAX_GPUS). */
static inline int fn_device_count(void)
{
	char buf[64];
	unsigned long long v;

	if (fn_node_read("devices", buf, sizeof buf) != 0 || fn_parse_u64(buf, &v) != 0)
		return 0;
	return v > FN_MAX_GPUS ? FN_MAX_GPUS : (int)v;
}

/*
 * fn_init_error reads "cuda_init_error" or "nvml_init_error". It returns
 * 1 and stores the code when the file holds a number, else 0.
 */
static inline int fn_init_error(const char *name, int *code)
{
	char buf[64];

	if (fn_node_read(name, buf, sizeof buf) != 0)
		return 0;
	return fn_parse_int(buf, code) == 0;
}

/* fn_gpu_name stores the GPU's marketing name ("Fake GPU <i>"). */
static inline void fn_gpu_name(int gpu, char *buf, size_t size)
{
	if (fn_gpu_read(gpu, "name", buf, size) != 0 || buf[0] == '\0')
		snprintf(buf, size, "Fake GPU %d", gpu);
}

/* fn_gpu_uuid stores the GPU's UUID in NVML form, "GPU-xxxxxxxx-...". */
static inline void fn_gpu_uuid(int gpu, char *buf, size_t size)
{
	if (fn_gpu_read(gpu, "uuid", buf, size) != 0 || buf[0] == '\0')
		snprintf(buf, size, "GPU-00000000-0000-4000-8000-0000000000%02x", gpu & 0xff);
}

/* fn_gpu_total returns the GPU's memory size in bytes. */
static inline unsigned long long fn_gpu_total(int gpu)
{
	return fn_gpu_u64(gpu, "total", FN_DEFAULT_TOTAL);
}

/*
 * fn_gpu_util returns the base (foreign) utilization percent, or -1 when
 * the "util" file says "na" (utilization not supported).
 */
static inline int fn_gpu_util(int gpu)
{
	char buf[64];
	unsigned long long v;

	if (fn_gpu_read(gpu, "util", buf, sizeof buf) != 0)
		return 0;
	if (strcmp(buf, "na") == 0)
		return -1;
	if (fn_parse_u64(buf, &v) != 0)
		return 0;
	return v > 100 ? 100 : (int)v;
}

/* fn_gpu_compute_mode returns 0 default, 2 prohibited, 3 exclusive process. */
static inline int fn_gpu_compute_mode(int gpu)
{
	return (int)fn_gpu_u64(gpu, "compute_mode", 0);
}

/* fn_gpu_mig returns 1 when MIG mode is enabled, else 0. */
static inline int fn_gpu_mig(int gpu)
{
	return fn_gpu_u64(gpu, "mig", 0) != 0;
}

/* fn_gpu_power returns the idle power draw in milliwatts. */
static inline unsigned fn_gpu_power(int gpu)
{
	return (unsigned)fn_gpu_u64(gpu, "power", FN_DEFAULT_POWER_MW);
}

/*
 * fn_gpu_reserved returns the bytes the driver reserves for itself, which
 * only nvmlDeviceGetMemoryInfo_v2 reports (and counts as used); 0 unless set.
 */
static inline unsigned long long fn_gpu_reserved(int gpu)
{
	return fn_gpu_u64(gpu, "reserved", 0);
}

/* fn_gpu_cc stores the compute capability, "<major>.<minor>" in the file. */
static inline void fn_gpu_cc(int gpu, int *major, int *minor)
{
	char buf[64];
	int ma, mi;

	*major = FN_DEFAULT_CC_MAJOR;
	*minor = FN_DEFAULT_CC_MINOR;
	if (fn_gpu_read(gpu, "cc", buf, sizeof buf) != 0)
		return;
	if (sscanf(buf, "%d.%d", &ma, &mi) == 2) {
		*major = ma;
		*minor = mi;
	}
}

/* ---------------------------------------------------- process records */

/*
 * fn_pid_alive reports whether pid names a live process. EPERM means it
 * exists but belongs to someone else.
 */
static inline int fn_pid_alive(int pid)
{
	if (pid <= 0)
		return 0;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* fn_is_pid_name reports whether a directory entry is a decimal pid. */
static inline int fn_is_pid_name(const char *name)
{
	const char *p;

	if (name[0] == '\0' || name[0] == '0')
		return 0;
	for (p = name; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return p - name <= 9;
}

/*
 * fn_proc_parse reads the record at path into p (p->pid is left alone).
 * Unknown keys are ignored; if a file holds more than FN_MAX_KERNELS
 * kernel lines, the most recent ones are kept. It returns 0, or -1 if the
 * file cannot be read.
 */
static inline int fn_proc_parse(const char *path, struct fn_proc *p)
{
	char line[256];
	long long a, b;
	unsigned long long u;
	FILE *f;

	p->contexts = 0;
	p->bytes = 0;
	p->launches = 0;
	p->nkernels = 0;
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "contexts %lld", &a) == 1) {
			p->contexts = a;
		} else if (sscanf(line, "bytes %llu", &u) == 1) {
			p->bytes = u;
		} else if (sscanf(line, "launches %lld", &a) == 1) {
			p->launches = a;
		} else if (sscanf(line, "kernel %lld %lld", &a, &b) == 2) {
			if (p->nkernels == FN_MAX_KERNELS) {
				memmove(p->kernels, p->kernels + 1,
					(FN_MAX_KERNELS - 1) * sizeof p->kernels[0]);
				p->nkernels--;
			}
			p->kernels[p->nkernels].start = a;
			p->kernels[p->nkernels].end = b;
			p->nkernels++;
		}
	}
	fclose(f);
	return 0;
}

static inline int fn_proc_cmp(const void *a, const void *b)
{
	const struct fn_proc *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/*
 * fn_load_procs reads every record of GPU gpu, sorted by pid, into a
 * malloc'd array stored in *out (free it with free). Dead pids are
 * included; callers filter with fn_pid_alive. It returns the number of
 * records (0 with *out == NULL when there are none or on error).
 */
static inline int fn_load_procs(int gpu, struct fn_proc **out)
{
	char dirpath[PATH_MAX], path[PATH_MAX + sizeof(((struct dirent *)0)->d_name) + 1];
	struct fn_proc *procs = NULL, *grown;
	int n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	if (fn_path(dirpath, sizeof dirpath, "gpu%d/procs", gpu) != 0)
		return 0;
	d = opendir(dirpath);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (!fn_is_pid_name(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			grown = realloc(procs, (size_t)cap * sizeof *procs);
			if (grown == NULL)
				break;
			procs = grown;
		}
		snprintf(path, sizeof path, "%s/%s", dirpath, de->d_name);
		procs[n].pid = atoi(de->d_name);
		if (fn_proc_parse(path, &procs[n]) == 0)
			n++;
	}
	closedir(d);
	if (n == 0) {
		free(procs);
		return 0;
	}
	qsort(procs, (size_t)n, sizeof *procs, fn_proc_cmp);
	*out = procs;
	return n;
}

/* fn_mkdir_procs creates gpu<i>/procs (and gpu<i>) if needed; 0 or -1. */
static inline int fn_mkdir_procs(int gpu)
{
	char path[PATH_MAX];

	if (fn_path(path, sizeof path, "gpu%d", gpu) != 0)
		return -1;
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	if (fn_path(path, sizeof path, "gpu%d/procs", gpu) != 0)
		return -1;
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* fn_write_all writes len bytes to fd; 0 or -1. */
static inline int fn_write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * fn_proc_store replaces GPU gpu's record for p->pid atomically, or
 * deletes it when both contexts and bytes are 0. Failures are silent: a
 * driver library has nowhere to report them. It returns 0 or -1. Callers
 * hold their library's lock (seq, which names temporary files, is shared).
 */
static inline int fn_proc_store(int gpu, const struct fn_proc *p)
{
	/* 3 counters + FN_MAX_KERNELS lines of two 20-digit numbers */
	char buf[128 + FN_MAX_KERNELS * 56];
	char path[PATH_MAX], tmp[PATH_MAX];
	static unsigned long seq;
	size_t len;
	int i, fd, rc;

	if (fn_path(path, sizeof path, "gpu%d/procs/%d", gpu, p->pid) != 0)
		return -1;
	if (p->contexts <= 0 && p->bytes == 0) {
		if (unlink(path) != 0 && errno != ENOENT)
			return -1;
		return 0;
	}
	len = (size_t)snprintf(buf, sizeof buf, "contexts %lld\nbytes %llu\nlaunches %lld\n",
			       p->contexts, p->bytes, p->launches);
	for (i = 0; i < p->nkernels; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "kernel %lld %lld\n",
					(long long)p->kernels[i].start,
					(long long)p->kernels[i].end);

	/* The temporary name starts with '.', so readers never parse it. */
	if (fn_path(tmp, sizeof tmp, "gpu%d/procs/.%d.%lu.tmp", gpu, p->pid, ++seq) != 0)
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 && errno == ENOENT && fn_mkdir_procs(gpu) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	rc = fn_write_all(fd, buf, len);
	if (close(fd) != 0)
		rc = -1;
	if (rc != 0) {
		unlink(tmp);
		return -1;
	}
#ifdef RENAME_EXCHANGE
	/*
	 * Replacing a file with rename(2) makes ext4 flush the new file's
	 * data first (auto_da_alloc), which costs about half a millisecond
	 * per kernel launch. Exchanging the two names is just as atomic and
	 * does not, so do that when the record exists, then drop the old one.
	 */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
		unlink(tmp);
		return 0;
	}
#endif
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- duty */

static inline int fn_interval_cmp(const void *a, const void *b)
{
	const struct fn_interval *x = a, *y = b;

	return (x->start > y->start) - (x->start < y->start);
}

/*
 * fn_duty returns the percentage (0..100) of the last FN_DUTY_WINDOW_NS
 * before now that the process's kernels covered. Overlapping intervals
 * (several contexts on one GPU) count once.
 */
static inline int fn_duty(const struct fn_proc *p, int64_t now)
{
	struct fn_interval iv[FN_MAX_KERNELS];
	int64_t lo = now - FN_DUTY_WINDOW_NS, busy = 0, s, e, cur_s = 0, cur_e = 0;
	int i, n = 0, open = 0;

	/* Clip every interval to the window, dropping those outside it. */
	for (i = 0; i < p->nkernels; i++) {
		s = p->kernels[i].start < lo ? lo : p->kernels[i].start;
		e = p->kernels[i].end > now ? now : p->kernels[i].end;
		if (e > s) {
			iv[n].start = s;
			iv[n].end = e;
			n++;
		}
	}
	qsort(iv, (size_t)n, sizeof iv[0], fn_interval_cmp);

	/* Sum the length of their union. */
	for (i = 0; i < n; i++) {
		if (open && iv[i].start <= cur_e) {
			if (iv[i].end > cur_e)
				cur_e = iv[i].end;
			continue;
		}
		if (open)
			busy += cur_e - cur_s;
		cur_s = iv[i].start;
		cur_e = iv[i].end;
		open = 1;
	}
	if (open)
		busy += cur_e - cur_s;
	return (int)(busy * 100 / FN_DUTY_WINDOW_NS);
}

#endif /* FAKEGPU_FAKENODE_H */

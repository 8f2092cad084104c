/*
 * Warm task starts: the process primitives of the engine's per-run "zygote"
 * (shim/runtime/zygote.R). The zygote is an Rscript that has loaded the task
 * runtime, the run's code and its packages; it forks one child per task.
 * Each child gets what a fresh Rscript would have: its own process group,
 * death with its parent, the task's own stdout/stderr, no inherited file
 * descriptors (its own tempdir() is R's: zygote.R). Only system calls here,
 * no R internals. Linux only (prctl); elsewhere the functions say so and the
 * engine starts a fresh Rscript per task.
 */
#define _GNU_SOURCE
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Ends a child that cannot become a task (R's own exit would run its
 * clean-up on the zygote's state). */
static void child_exit(int code) {
#ifdef SYS_exit_group
    syscall(SYS_exit_group, code);
#else
    _exit(code);
#endif
}

#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0
#endif

/* Bumped when the zygote protocol between zygote.R and this file changes. */
#define MF_ZYGOTE_ABI 1

static int chld_pipe[2] = {-1, -1};

static void on_sigchld(int sig) {
    int saved = errno;
    (void)sig;
    if (chld_pipe[1] >= 0) (void)!write(chld_pipe[1], "c", 1);
    errno = saved;
}

SEXP mf_zygote_abi(void) { return ScalarInteger(MF_ZYGOTE_ABI); }

/* Wakes mf_zygote_wait when a child ends (a self-pipe written by SIGCHLD). */
SEXP mf_zygote_init(void) {
#ifndef __linux__
    error("warm task starts need Linux");
#else
    if (chld_pipe[0] >= 0) return R_NilValue;
    if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) error("pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) != 0) error("sigaction: %s", strerror(errno));
    return R_NilValue;
#endif
}

/*
 * Waits up to timeout_ms (-1: forever) for a request on the control socket
 * (a SOCK_SEQPACKET record, with file descriptors attached) or the end of a
 * child. Returns list(kind, msg, fds): kind is "msg", "child", "timeout" or
 * "eof" (the engine is gone).
 */
SEXP mf_zygote_wait(SEXP sock, SEXP timeout) {
    int fd = asInteger(sock), to = asInteger(timeout);
    struct pollfd p[2] = {{fd, POLLIN, 0}, {chld_pipe[0], POLLIN, 0}};
    const char *kind = "timeout";
    char buf[8192];
    int fds[8], nfds = 0;
    ssize_t n = 0;
    int r = poll(p, chld_pipe[0] >= 0 ? 2 : 1, to);
    if (r < 0 && errno != EINTR) error("poll: %s", strerror(errno));
    if (r > 0 && (p[1].revents & POLLIN)) {
        char drain[64];
        while (read(chld_pipe[0], drain, sizeof drain) > 0) {}
        kind = "child";
    }
    if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        struct iovec iov = {buf, sizeof buf - 1};
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof fds)];
        } ctl;
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof ctl.b;
        do n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
        if (n <= 0) {
            kind = "eof";
            n = 0;
        } else {
            kind = "msg";
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
                int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < k && nfds < 8; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            }
        }
    }
    buf[n] = 0;
    SEXP out = PROTECT(allocVector(VECSXP, 3));
    SET_VECTOR_ELT(out, 0, mkString(kind));
    SET_VECTOR_ELT(out, 1, mkString(buf));
    SEXP f = allocVector(INTSXP, nfds);
    SET_VECTOR_ELT(out, 2, f);
    for (int i = 0; i < nfds; i++) INTEGER(f)[i] = fds[i];
    UNPROTECT(1);
    return out;
}

SEXP mf_zygote_send(SEXP sock, SEXP msg) {
    const char *s = CHAR(STRING_ELT(msg, 0));
    ssize_t n;
    do n = send(asInteger(sock), s, strlen(s), MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    return ScalarLogical(n >= 0);
}

SEXP mf_zygote_close(SEXP fds) {
    for (int i = 0; i < LENGTH(fds); i++) close(INTEGER(fds)[i]);
    return R_NilValue;
}

static void close_from(int lowfd) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int i = lowfd; i < (max > 0 ? max : 1024); i++) close(i);
        return;
    }
    int dfd = dirfd(d), list[1024], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        int f = atoi(e->d_name);
        if (f >= lowfd && f != dfd) list[n++] = f;
    }
    closedir(d);
    for (int i = 0; i < n; i++) close(list[i]);
}

/*
 * Forks a task. Returns the child's pid in the parent, 0 in the child, which
 * has fds 1 and 2 on out and err, fd 0 kept (the zygote's /dev/null) and
 * every other fd closed.
 */
SEXP mf_zygote_fork(SEXP out_fd, SEXP err_fd) {
#ifndef __linux__
    error("warm task starts need Linux");
#else
    int out = asInteger(out_fd), err = asInteger(err_fd);
    pid_t parent = getpid();
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) error("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) child_exit(137); /* the zygote died meanwhile */
        signal(SIGCHLD, SIG_DFL);
        chld_pipe[0] = chld_pipe[1] = -1;
        if (dup2(out, 1) < 0 || dup2(err, 2) < 0) child_exit(126);
        close_from(3);
    } else {
        setpgid(pid, pid); /* no window where a kill of the group misses it */
        close(out);
        close(err);
    }
    return ScalarInteger(pid);
#endif
}

/*
 * Reaps the children that ended: each one's process group is killed before
 * its leader is reaped (so the group id cannot have been reused), as the
 * engine does for a fresh Rscript. Returns an integer matrix with columns
 * pid, exit code (-1 if killed by a signal) and signal.
 */
SEXP mf_zygote_reap(void) {
    int pids[256], codes[256], sigs[256], n = 0;
    while (n < 256) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
        pid_t pid = info.si_pid;
        kill(-pid, SIGKILL);
        int st = 0;
        if (waitpid(pid, &st, 0) != pid) break;
        pids[n] = pid;
        codes[n] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        sigs[n] = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        n++;
    }
    SEXP m = PROTECT(allocMatrix(INTSXP, n, 3));
    for (int i = 0; i < n; i++) {
        INTEGER(m)[i] = pids[i];
        INTEGER(m)[i + n] = codes[i];
        INTEGER(m)[i + 2 * n] = sigs[i];
    }
    UNPROTECT(1);
    return m;
}

/* Signals a child's process group (the zygote only asks for live children). */
SEXP mf_zygote_kill(SEXP pid, SEXP sig) {
    return ScalarLogical(kill(-asInteger(pid), asInteger(sig)) == 0);
}

static const R_CallMethodDef calls[] = {
    {"mf_zygote_abi", (DL_FUNC)&mf_zygote_abi, 0},
    {"mf_zygote_init", (DL_FUNC)&mf_zygote_init, 0},
    {"mf_zygote_wait", (DL_FUNC)&mf_zygote_wait, 2},
    {"mf_zygote_send", (DL_FUNC)&mf_zygote_send, 2},
    {"mf_zygote_close", (DL_FUNC)&mf_zygote_close, 1},
    {"mf_zygote_fork", (DL_FUNC)&mf_zygote_fork, 2},
    {"mf_zygote_reap", (DL_FUNC)&mf_zygote_reap, 0},
    {"mf_zygote_kill", (DL_FUNC)&mf_zygote_kill, 2},
    {NULL, NULL, 0}};

void R_init_metaflow(DllInfo *dll) {
    R_registerRoutines(dll, NULL, calls, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
    R_forceSymbols(dll, FALSE);
}

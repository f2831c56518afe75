/* A preload library for fault tests: while the file named by the environment variable
 * SUNDIAL_TEST_FAIL_FSYNC exists, fsync() and fdatasync() fail with EIO without syncing,
 * as they do when a disk loses writes. Otherwise both pass through to the C library.
 *
 * Built by conformance/test_storage_faults.py with the machine's C compiler and loaded into a
 * real Sundial process with LD_PRELOAD. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *trigger = getenv("SUNDIAL_TEST_FAIL_FSYNC");
    return trigger != NULL && access(trigger, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

/* Prints COUNT lines "<ns since the epoch> <padding>", one every INTERVAL_US microseconds:
   the log-latency benchmark runs it in a RUN step, and its WebSocket client subtracts the
   stamp from the time it received the line (same machine, same clock). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 1000;
    long interval_us = argc > 2 ? atol(argv[2]) : 1000;
    struct timespec now;
    setvbuf(stdout, NULL, _IONBF, 0);
    for (long i = 0; i < count; i++) {
        clock_gettime(CLOCK_REALTIME, &now);
        printf("%lld stamp-%ld\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec, i);
        if (interval_us > 0) usleep(interval_us);
    }
    return 0;
}

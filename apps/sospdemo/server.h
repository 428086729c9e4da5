/*
 * `sospdemo server`: a node of the photo-identification service (server.c). Needs the group's
 * rpc layer (dr_rpc); builds without it replace it with a stub that says so.
 */
#ifndef SOSPDEMO_SERVER_H
#define SOSPDEMO_SERVER_H

/**
 * Runs `sospdemo server [--SECTION/key=value ...]` (argv[0] is the program, argv[1] "server").
 * Blocks until ENTER, SIGINT or SIGTERM; returns the exit code (0 after a clean stop, 1 on a
 * configuration or start error). Installs SIGINT/SIGTERM handlers (they request the stop).
 */
int sd_server_main(int argc, char **argv);

#endif

/*
 * Deterministic simulator of the group core: many nodes in one process over a virtual network
 * (per-link FIFO like TCP, seeded latency and bandwidth), a virtual clock and seeded random
 * workloads; checks PROTOCOL.md §7's failure-free invariants (total order, no creation, no
 * duplication, FIFO per sender, liveness) after every delivery and at the end of the run.
 * One seed fully determines a run, so a failing seed replays exactly (with --trace).
 *
 * Fault mode (config.faults, sim_faults.c's scenario): the group starts from its leader alone
 * and grows by joins (view changes); once every initial member is in, a minority of them
 * crash (peers may or may not see the connection break), pause past the failure timeout, leave
 * cleanly, or are cut off by a network partition that heals later; a late node may join. The
 * checker then also verifies agreement across view changes (same version -> same message
 * everywhere; a member of view v that installed v+1 delivered every view-v message anyone
 * delivered: nothing delivered is lost by survivors), that faulty nodes stop with the right
 * reason and correct ones never do, and liveness: the survivors converge on one view of exactly
 * the correct nodes and every message a correct node sent is delivered.
 */
#ifndef DR_SIM_SIM_H
#define DR_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/**
 * Test switches that feed the checker a deliberately wrong history (the core is untouched), so
 * that each of its checks is shown to fire: tests/sim/CMakeLists.txt expects the named failure.
 */
typedef enum sim_tamper {
    SIM_TAMPER_NONE = 0,
    SIM_TAMPER_CORRUPT, /**< one delivery's payload byte flipped: "no creation" */
    SIM_TAMPER_VIEW,    /**< the last node's installed view reported with another vid: "views
                             differ" (view agreement) */
    SIM_TAMPER_DEAF,    /**< every frame to the last node discarded: "liveness" */
} sim_tamper;

/** One run's parameters. */
typedef struct sim_config {
    uint64_t seed;           /**< determines everything else */
    uint32_t num_nodes;      /**< 0: chosen by the seed (2..7) */
    bool broken_delivery;    /**< test switch: ordered shards deliver on receipt */
    FILE *trace;             /**< readable trace of the run, or NULL */
    uint64_t max_virtual_us; /**< liveness deadline in virtual time */
    bool faults;             /**< fault mode: crashes, long pauses, leaves, partitions, joins */
    bool skip_trim;          /**< test switch: view changes skip the ragged-trim deliveries */
    bool no_raw;             /**< fault mode: ordered subgroups only (the layouts of seeds
                                  recorded before raw subgroups joined the fault mode) */
    sim_tamper tamper;       /**< test switch: a wrong history for the checker (above) */
} sim_config;

/** One run's outcome. */
typedef struct sim_result {
    bool passed;            /**< no invariant violated, everything delivered */
    char failure[512];      /**< first violation, "" if passed */
    uint32_t num_nodes;     /**< nodes simulated */
    uint64_t messages_sent; /**< application messages multicast */
    uint64_t deliveries;    /**< DELIVER actions checked (over all nodes) */
    uint64_t frames;        /**< frames carried by the virtual network */
    uint64_t virtual_us;    /**< virtual time at the end */
    uint32_t view_changes;  /**< views installed after the first (fault mode) */
    uint32_t faults;        /**< faults injected (fault mode) */
    uint64_t settle_us;     /**< fault mode: from the last fault to completion (liveness) */
    uint64_t timeout_us;    /**< fault mode: the run's failure timeout (heartbeat x missed) */
    bool link_cost_both;    /**< fault mode: one broken link excluded both of its ends */
    uint32_t restarts;      /**< fault mode: crashed nodes restarted with the same id and address */
    uint32_t rejoined;      /**< fault mode: ... of which installed a view as a new member */
} sim_result;

/** Runs one seed. Returns 0 (see result->passed) or a negative DR_E* code on setup failure. */
int sim_run(const sim_config *config, sim_result *result);

#endif

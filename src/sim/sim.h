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
 *
 * Durable mode (config.total_restart; docs/persistence.md "Total restart", PROTOCOL.md §7
 * invariant 6): every ordered delivery is appended to the node's simulated log of its shard;
 * the node syncs its logs at random moments and reports them (dr_core_persisted). Once the
 * group is formed, power cuts stop every node at once (each log keeps what was synced plus a
 * random part of the rest, as a torn tail cut at recovery would), then nodes restart with their
 * saved view and log tails (dr_core_restart_options); 1 to 3 cuts per run, the last followed
 * by every node. With config.partial_restarts an earlier cut may bring back a random subset
 * only (the others return at the next cut, with an older view and log). Checks: no globally
 * persisted version (DR_ACTION_PERSISTED, any node) is cut by a restart's trim; a restart set
 * without a majority of its latest saved view never installs a view; no restarted node keeps a
 * log record that an earlier restart discarded (beyond its trim, in a view it covered); a
 * version names one message in every log; and liveness: after the last restart every node
 * installs the restart view and delivers every message sent after it.
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
    SIM_TAMPER_CORRUPT,       /**< one delivery's payload byte flipped: "no creation" */
    SIM_TAMPER_VIEW,          /**< the last node's installed view reported with another vid: "views
                                   differ" (view agreement) */
    SIM_TAMPER_DEAF,          /**< every frame to the last node discarded: "liveness" */
    SIM_TAMPER_LOST_SYNC,     /**< durable mode: a power cut takes the last synced record of
                                   the last node's logs: "invariant 6" (a persisted version cut) */
    SIM_TAMPER_SKIP_TRUNCATE, /**< durable mode: the last node ignores TRUNCATE: "invariant 6"
                                   (a discarded version kept) */
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
    bool total_restart;      /**< durable mode: logs, power cuts and total restarts (above) */
    bool partial_restarts;   /**< durable mode: an earlier cut may restart a subset only */
    bool fifo_links;         /**< every link one FIFO (seeds recorded before control frames
                                  could overtake data; sim.c, "Network model") */
} sim_config;

/** One run's outcome. */
typedef struct sim_result {
    bool passed;            /**< no invariant violated, everything delivered */
    char failure[512];      /**< first violation, "" if passed */
    uint32_t num_nodes;     /**< nodes simulated */
    uint64_t messages_sent; /**< application messages multicast */
    uint64_t deliveries;    /**< DELIVER actions checked (over all nodes) */
    uint64_t frames;        /**< frames carried by the virtual network */
    uint64_t overtakes;     /**< control frames due before a data frame sent earlier on their
                                 link (the reordering the transport's urgent lane allows) */
    uint64_t virtual_us;    /**< virtual time at the end */
    uint32_t view_changes;  /**< views installed after the first (fault mode) */
    uint32_t faults;        /**< faults injected (fault mode) */
    uint64_t settle_us;     /**< fault mode: from the last fault to completion (liveness) */
    uint64_t timeout_us;    /**< fault mode: the run's failure timeout (heartbeat x missed) */
    bool link_cost_both;    /**< fault mode: one broken link excluded both of its ends */
    uint32_t restarts;      /**< fault mode: crashed nodes restarted with the same id and address */
    uint32_t rejoined;      /**< fault mode: ... of which installed a view as a new member */
    uint32_t power_cuts;    /**< durable mode: every node stopped at once */
    uint32_t restart_views; /**< durable mode: restart views installed (first installer each) */
} sim_result;

/** Runs one seed. Returns 0 (see result->passed) or a negative DR_E* code on setup failure. */
int sim_run(const sim_config *config, sim_result *result);

#endif

/*
 * Bounded delivery (PROTOCOL.md §3.5, issue 11): with count_consumption, an ordered message
 * counts against every sender's window until the application at its receiver took it
 * (dr_core_consumed). A receiver that takes nothing stops the senders after one window; taking
 * the deliveries opens the window again. Without the option the window ignores the application.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "harness.h"

#define WINDOW 4u

static harness *cluster(bool count_consumption) {
    dr_core_options options;
    h_options(&options, 3);
    options.window_size = WINDOW;
    options.count_consumption = count_consumption;
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, 3, &options);
    for (uint32_t i = 0; i < 3; i++)
        assert_true(h->nodes[i].installed);
    return h;
}

/** Node 0 sends until its window is full (or `limit` messages); returns how many went. */
static uint32_t send_until_blocked(harness *h, uint32_t limit) {
    uint32_t sent = 0;
    for (; sent < limit; sent++) {
        uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, (uint8_t)sent};
        int rc =
            dr_core_send(h->nodes[0].core, 0, payload, sizeof payload, DR_MODE_ORDERED, h->now_us);
        h_drain(h, 0);
        if (rc == DR_EAGAIN)
            break;
        assert_int_equal(rc, 0);
        h_pump(h, (size_t)-1);
    }
    return sent;
}

/** Every node but `slow` takes all it was handed. */
static void consume_all_but(harness *h, int slow) {
    for (uint32_t i = 0; i < h->num_nodes; i++) {
        const h_node *node = &h->nodes[i];
        if ((int)i == slow || node->num_deliveries == 0)
            continue;
        const h_delivery *last = &node->deliveries[node->num_deliveries - 1];
        dr_core_consumed(node->core, 0, last->version, h->now_us);
        h_drain(h, i);
    }
    h_pump(h, (size_t)-1);
}

static void test_slow_receiver_blocks_senders(void **state) {
    (void)state;
    harness *h = cluster(true);
    uint32_t sent = send_until_blocked(h, 100);
    consume_all_but(h, 2);
    sent += send_until_blocked(h, 100);
    /* node 2 took nothing: node 0 got exactly one window (plus what the others' nulls allow:
     * its own messages are all it sends, so exactly WINDOW) */
    assert_int_equal(sent, WINDOW);
    assert_int_equal(h->nodes[2].num_deliveries, WINDOW); /* handed over, not yet taken */
    uint32_t opened = h->nodes[0].window_open[0];
    consume_all_but(h, -1); /* node 2 takes them */
    assert_true(h->nodes[0].window_open[0] > opened);
    sent += send_until_blocked(h, 100);
    assert_int_equal(sent, 2 * WINDOW);
    /* a consumption report of an older or unknown version changes nothing */
    dr_core_consumed(h->nodes[2].core, 0, -1, h->now_us);
    dr_core_consumed(h->nodes[2].core, 7, 0, h->now_us);
    h_free(h);
    free(h);
}

static void test_without_the_option_the_window_ignores_the_application(void **state) {
    (void)state;
    harness *h = cluster(false);
    uint32_t sent = send_until_blocked(h, 3 * WINDOW);
    assert_int_equal(sent, 3 * WINDOW); /* nobody reported anything, nobody waited */
    h_free(h);
    free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_receiver_blocks_senders),
        cmocka_unit_test(test_without_the_option_the_window_ignores_the_application),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

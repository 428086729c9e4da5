/*
 * chat: a group chat on the group API alone (include/derecho/group.h): ordered multicast and
 * views, no replicated objects.
 *
 *   chat [--SECTION/key=value ...]
 *
 * The configuration is derecho.cfg ($DERECHO_CONF_FILE, else ./derecho.cfg) plus the overrides
 * (each process's --DERECHO/local_id and --DERECHO/gms_port); one subgroup of type CHAT sized
 * by [SUBGROUP/CHAT] (min_nodes 1 lets the first member talk alone; up to max_nodes talk).
 * Every line read from standard input is multicast to the group; every member prints every
 * line in the same order (ordered delivery), as "<sender id> text". Each view is printed as
 * members come and go:
 *     view 2: members 0 1 2 | joined 2
 *     view 3: members 0 1 | left 2
 * At the end of its input a member leaves the group cleanly (the others print a view without
 * it) and exits.
 */
#include <derecho/config.h>
#include <derecho/group.h>

#include <stdio.h>
#include <string.h>

static dr_view g_previous; /* the last view printed (delivery thread only) */

static bool contains(const dr_view *view, uint32_t id) {
    for (uint32_t i = 0; i < view->num_members; i++)
        if (view->member_ids[i] == id)
            return true;
    return false;
}

/* Prints the ids of `from` that are not in `other`, after `label`; nothing if none. */
static void print_difference(const char *label, const dr_view *from, const dr_view *other) {
    bool first = true;
    for (uint32_t i = 0; i < from->num_members; i++) {
        if (!contains(other, from->member_ids[i])) {
            printf("%s%u", first ? label : " ", from->member_ids[i]);
            first = false;
        }
    }
}

/* View callback (delivery thread): the members, who joined and who left. */
static void on_view(void *ctx, const dr_group_view *view) {
    (void)ctx;
    printf("view %d: members", view->view.vid);
    for (uint32_t i = 0; i < view->view.num_members; i++)
        printf(" %u", view->view.member_ids[i]);
    print_difference(" | joined ", &view->view, &g_previous);
    print_difference(" | left ", &g_previous, &view->view);
    printf("\n");
    fflush(stdout);
    g_previous = view->view;
}

/* Delivery callback (delivery thread): one chat line, in the group's order. */
static void on_deliver(void *ctx, const dr_message *message) {
    (void)ctx;
    printf("<%u> %.*s\n", message->sender_id, (int)message->len, (const char *)message->bytes);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *overrides[64];
    size_t num_overrides = 0;
    for (int i = 1; i < argc; i++) {
        if (!dr_config_is_override_arg(argv[i]) || !strchr(argv[i], '=') || num_overrides == 64)
            return fprintf(stderr, "usage: chat [--SECTION/key=value ...] < lines\n"), 2;
        overrides[num_overrides++] = argv[i] + 2; /* without the "--" */
    }
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.overrides = overrides, .override_count = num_overrides};
    dr_layout_spec spec = {.num_types = 1, .types = {{.name = "CHAT", .num_subgroups = 1}}};
    if (dr_config_load(&options, &config, &err) ||
        dr_group_policy_from_config(config, "CHAT", DR_MODE_ORDERED, &spec.types[0].policy, &err))
        return fprintf(stderr, "chat: configuration: %s\n", err.msg), 1;
    dr_config_apply_logging(config);
    dr_group_callbacks callbacks = {.on_deliver = on_deliver, .on_view = on_view};
    dr_group *group = NULL;
    if (dr_group_create(config, &spec, &callbacks, &group, &err))
        return fprintf(stderr, "chat: cannot start: %s\n", err.msg), 1;
    int rc = dr_group_wait_view(group, 0, 30000);
    char line[1024];
    while (rc == 0 && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        rc = dr_group_send(group, 0, line, strlen(line), 10000);
    }
    if (rc != 0)
        fprintf(stderr, "chat: %s\n", dr_strerror(rc));
    dr_group_leave(group, 5000); /* the last member to leave ends the group */
    dr_group_destroy(group);
    dr_config_free(config);
    return rc == 0 ? 0 : 1;
}

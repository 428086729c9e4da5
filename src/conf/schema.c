/*
 * The schema of derecho.cfg (see schema.h): sections, keys, types, ranges, defaults and the
 * old key names of the seed's files. Defaults follow Derecho's, except where noted:
 * heartbeat_ms defaults to 100 (Derecho's 1 ms suits RDMA polling, not TCP nodes that sleep)
 * and disable_partitioning_safety defaults to false (safety on).
 */
#include "conf/schema.h"

#include "derecho/error.h"
#include "derecho/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GIB (1024ull * 1024ull * 1024ull)

const conf_key_spec conf_key_specs[] = {
    /* [DERECHO] */
    {"DERECHO", "contact_ip", "leader_ip", CONF_IP, 0, 0, "127.0.0.1", NULL},
    {"DERECHO", "contact_port", "leader_gms_port", CONF_PORT, 0, 0, "23580", NULL},
    {"DERECHO", "restart_leaders", NULL, CONF_STRING, 0, 0, "127.0.0.1", NULL},
    {"DERECHO", "restart_leader_ports", NULL, CONF_STRING, 0, 0, "23580", NULL},
    {"DERECHO", "local_id", NULL, CONF_UINT, 0, 65535, NULL, NULL},
    {"DERECHO", "local_ip", NULL, CONF_IP, 0, 0, "127.0.0.1", NULL},
    {"DERECHO", "gms_port", NULL, CONF_PORT, 0, 0, "23580", NULL},
    {"DERECHO", "state_transfer_port", "rpc_port", CONF_PORT, 0, 0, "28366", NULL},
    {"DERECHO", "sst_port", NULL, CONF_PORT, 0, 0, "37683", NULL},
    {"DERECHO", "rdmc_port", NULL, CONF_PORT, 0, 0, "31675", NULL},
    {"DERECHO", "external_port", NULL, CONF_PORT, 0, 0, "32645", NULL},
    {"DERECHO", "heartbeat_ms", "timeout_ms", CONF_UINT, 1, 3600000, "100", NULL},
    /* a member silent for heartbeat_ms x this is suspected (this implementation's key) */
    {"DERECHO", "suspicion_missed_heartbeats", NULL, CONF_UINT, 1, 10000, "5", NULL},
    {"DERECHO", "sst_poll_cq_timeout_ms", NULL, CONF_UINT, 1, 3600000, "2000", NULL},
    {"DERECHO", "p2p_loop_busy_wait_before_sleep_ms", NULL, CONF_UINT, 0, 60000, "0", NULL},
    {"DERECHO", "restart_timeout_ms", NULL, CONF_UINT, 1, 3600000, "2000", NULL},
    {"DERECHO", "enable_backup_restart_leaders", NULL, CONF_BOOL, 0, 0, "false", NULL},
    {"DERECHO", "disable_partitioning_safety", NULL, CONF_BOOL, 0, 0, "false", NULL},
    {"DERECHO", "max_node_id", NULL, CONF_UINT, 1, 65536, "1024", NULL},
    {"DERECHO", "max_p2p_request_payload_size", NULL, CONF_UINT, 128, 4 * GIB, "10240", NULL},
    {"DERECHO", "max_p2p_reply_payload_size", NULL, CONF_UINT, 128, 4 * GIB, "10240", NULL},
    {"DERECHO", "p2p_window_size", NULL, CONF_UINT, 1, 65536, "16", NULL},
    /* largest replicated state one shard hands a new member (this implementation's key) */
    {"DERECHO", "max_state_transfer_size", NULL, CONF_UINT, 1, 64 * GIB, "1073741824", NULL},
    /* group-port authentication and limits (docs/security.md; this implementation's keys):
     * key files hold 64 hex digits; relative paths are relative to the configuration file */
    {"DERECHO", "cluster_key_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"DERECHO", "admin_key_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"DERECHO", "client_key_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    /* seal every frame of the group port with AES-256-GCM (needs cluster_key_file) */
    {"DERECHO", "encrypt_group_port", NULL, CONF_BOOL, 0, 0, "false", NULL},
    {"DERECHO", "max_clients", NULL, CONF_UINT, 1, 1000000, "1024", NULL},
    {"DERECHO", "max_clients_per_ip", NULL, CONF_UINT, 1, 1000000, "256", NULL},
    /* [SUBGROUP/<PROFILE>] */
    {"SUBGROUP", "max_payload_size", NULL, CONF_UINT, 1, 4 * GIB, "10240", NULL},
    {"SUBGROUP", "max_smc_payload_size", NULL, CONF_UINT, 1, 4 * GIB, "10240", NULL},
    {"SUBGROUP", "max_reply_payload_size", NULL, CONF_UINT, 128, 4 * GIB, "10240", NULL},
    {"SUBGROUP", "block_size", NULL, CONF_UINT, 1, GIB, "1048576", NULL},
    {"SUBGROUP", "window_size", NULL, CONF_UINT, 1, 65536, "16", NULL},
    {"SUBGROUP", "window_bytes", NULL, CONF_UINT, 0, GIB, "4194304", NULL},
    {"SUBGROUP", "rdmc_send_algorithm", NULL, CONF_CHOICE, 0, 0, "binomial_send",
     "binomial_send|chain_send|sequential_send|tree_send"},
    {"SUBGROUP", "num_shards", NULL, CONF_UINT, 1, 65536, NULL, NULL},
    {"SUBGROUP", "min_nodes", NULL, CONF_UINT, 1, 65536, NULL, NULL},
    {"SUBGROUP", "max_nodes", NULL, CONF_UINT, 1, 65536, NULL, NULL},
    /* the profile's subgroups log every ordered delivery ([PERS]; include/derecho/durable.h) */
    {"SUBGROUP", "durable", NULL, CONF_BOOL, 0, 0, "false", NULL},
    /* [RDMA] */
    {"RDMA", "provider", NULL, CONF_CHOICE, 0, 0, "tcp", "sockets|tcp|verbs|shm|psm2|efa|udp"},
    {"RDMA", "domain", NULL, CONF_STRING, 0, 0, "lo", NULL},
    {"RDMA", "tx_depth", NULL, CONF_UINT, 1, 1048576, "256", NULL},
    {"RDMA", "rx_depth", NULL, CONF_UINT, 1, 1048576, "256", NULL},
    /* [PERS] */
    {"PERS", "file_path", NULL, CONF_STRING, 0, 0, ".plog", NULL},
    {"PERS", "ramdisk_path", NULL, CONF_STRING, 0, 0, "/dev/shm/volatile_t", NULL},
    {"PERS", "reset", NULL, CONF_BOOL, 0, 0, "false", NULL},
    {"PERS", "max_log_entry", NULL, CONF_UINT, 1, UINT64_MAX, "1048576", NULL},
    {"PERS", "max_data_size", NULL, CONF_UINT, 1, UINT64_MAX, "549755813888", NULL},
    {"PERS", "private_key_file", NULL, CONF_STRING, 0, 0, "private_key.pem", NULL},
    /* [LOGGER]: module levels without a default inherit default_log_level */
    {"LOGGER", "default_log_name", NULL, CONF_STRING, 0, 0, "derecho_debug", NULL},
    {"LOGGER", "default_log_level", NULL, CONF_LOG_LEVEL, 0, 0, "info", NULL},
    {"LOGGER", "general_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "conf_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "net_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "sst_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "viewmanager_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "rpc_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "persistence_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "store_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "infer_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "app_log_level", NULL, CONF_LOG_LEVEL, 0, 0, NULL, NULL},
    {"LOGGER", "log_to_terminal", NULL, CONF_BOOL, 0, 0, "true", NULL},
    {"LOGGER", "log_file_depth", NULL, CONF_UINT, 0, 1000, "3", NULL},
    /* [SOSPDEMO]: the photo-identification service (docs/sospdemo.md) */
    {"SOSPDEMO", "function_tier_base_port", NULL, CONF_UINT, 1, 65535, "28000", NULL},
    {"SOSPDEMO", "http_base_port", NULL, CONF_UINT, 0, 65535, "18000", NULL},
    {"SOSPDEMO", "rpc_workers", NULL, CONF_UINT, 1, 64, "4", NULL},
    {"SOSPDEMO", "grpc_workers", NULL, CONF_UINT, 1, 64, "4", NULL},
    /* [SOSPDEMO] security and limits (docs/security.md); file paths are relative to the file */
    {"SOSPDEMO", "tls_cert_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "tls_key_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "tls_ca_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "admin_token_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "inference_token_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "credentials_script", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "http_allowed_hosts", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"SOSPDEMO", "http_max_upload_bytes", NULL, CONF_UINT, 0, 64 * GIB, "0", NULL},
    {"SOSPDEMO", "http_max_connections", NULL, CONF_UINT, 1, 4096, "256", NULL},
    {"SOSPDEMO", "http_max_connections_per_ip", NULL, CONF_UINT, 0, 4096, "32", NULL},
    {"SOSPDEMO", "http_connection_timeout_s", NULL, CONF_UINT, 1, 3600, "30", NULL},
    {"SOSPDEMO", "grpc_call_timeout_ms", NULL, CONF_UINT, 100, 86400000, "60000", NULL},
    {"SOSPDEMO", "grpc_install_timeout_ms", NULL, CONF_UINT, 100, 86400000, "600000", NULL},
    {"SOSPDEMO", "max_tags_per_request", NULL, CONF_UINT, 1, 1024, "64", NULL},
    {"SOSPDEMO", "max_models_per_shard", NULL, CONF_UINT, 1, 1000000, "64", NULL},
    /* the categorizer's dynamic batching (docs/sospdemo.md): photos for one model that wait
     * together run as one batch of at most max_batch_size; max_queue_delay_us > 0 holds a lone
     * photo that long for company; batch_workers 0 = one per CPU */
    {"SOSPDEMO", "max_batch_size", NULL, CONF_UINT, 1, 64, "8", NULL},
    {"SOSPDEMO", "max_queue_delay_us", NULL, CONF_UINT, 0, 1000000, "0", NULL},
    {"SOSPDEMO", "batch_workers", NULL, CONF_UINT, 0, 64, "0", NULL},
    /* [LAYOUT] */
    {"LAYOUT", "json_layout", NULL, CONF_STRING, 0, 0, NULL, NULL},
    {"LAYOUT", "json_layout_file", NULL, CONF_STRING, 0, 0, NULL, NULL},
};
const size_t conf_key_spec_count = sizeof conf_key_specs / sizeof *conf_key_specs;

const char *const conf_section_classes[] = {"DERECHO", "SUBGROUP", "RDMA",     "PERS",
                                            "LOGGER",  "LAYOUT",   "SOSPDEMO", NULL};

const char *conf_section_class(const char *section) {
    if (strncmp(section, "SUBGROUP/", 9) == 0)
        return section[9] ? "SUBGROUP" : NULL;
    for (size_t i = 0; conf_section_classes[i]; i++) {
        if (strcmp(section, conf_section_classes[i]) == 0 && strcmp(section, "SUBGROUP") != 0)
            return conf_section_classes[i];
    }
    return NULL;
}

const conf_key_spec *conf_find_key(const char *section_class, const char *key) {
    for (size_t i = 0; section_class && i < conf_key_spec_count; i++) {
        const conf_key_spec *spec = &conf_key_specs[i];
        if (strcmp(spec->section_class, section_class) != 0)
            continue;
        if (strcmp(spec->key, key) == 0 || (spec->old_key && strcmp(spec->old_key, key) == 0))
            return spec;
    }
    return NULL;
}

int conf_parse_u64(const char *text, uint64_t *out) {
    if (!text || !*text || *text == '-' || *text == '+' || *text == ' ')
        return DR_EINVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 0);
    if (end == text || *end != '\0')
        return DR_EINVAL;
    if (errno == ERANGE)
        return DR_ERANGE;
    *out = value;
    return DR_OK;
}

int conf_parse_bool(const char *text, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return DR_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return DR_OK;
        }
    }
    return DR_EINVAL;
}

static int check_uint(const conf_key_spec *spec, const char *value, char *why, size_t why_len) {
    uint64_t number = 0;
    int rc = conf_parse_u64(value, &number);
    if (rc == DR_EINVAL) {
        snprintf(why, why_len, "not a number (expected an unsigned integer)");
        return rc;
    }
    if (rc == DR_OK && number >= spec->min && number <= spec->max)
        return DR_OK;
    snprintf(why, why_len, "out of range (%" PRIu64 "..%" PRIu64 ")", spec->min, spec->max);
    return DR_ERANGE;
}

static int check_choice(const conf_key_spec *spec, const char *value, char *why, size_t why_len) {
    size_t len = strlen(value);
    for (const char *word = spec->choices; word && *word;) {
        const char *bar = strchr(word, '|');
        size_t word_len = bar ? (size_t)(bar - word) : strlen(word);
        if (word_len == len && strncmp(word, value, len) == 0)
            return DR_OK;
        word = bar ? bar + 1 : NULL;
    }
    snprintf(why, why_len, "must be one of %s", spec->choices);
    return DR_EINVAL;
}

int conf_check_value(const conf_key_spec *spec, const char *value, char *why, size_t why_len) {
    unsigned char address[16];
    uint64_t number = 0;
    int flag = 0;
    dr_log_level level;
    switch (spec->kind) {
    case CONF_STRING:
        return DR_OK;
    case CONF_IP:
        if (inet_pton(AF_INET, value, address) == 1 || inet_pton(AF_INET6, value, address) == 1)
            return DR_OK;
        snprintf(why, why_len, "not an IP address");
        return DR_EINVAL;
    case CONF_PORT:
        if (conf_parse_u64(value, &number) == DR_EINVAL) {
            snprintf(why, why_len, "not a port number");
            return DR_EINVAL;
        }
        if (conf_parse_u64(value, &number) == DR_OK && number >= 1 && number <= 65535)
            return DR_OK;
        snprintf(why, why_len, "port out of range (1..65535)");
        return DR_ERANGE;
    case CONF_UINT:
        return check_uint(spec, value, why, why_len);
    case CONF_BOOL:
        if (conf_parse_bool(value, &flag) == DR_OK)
            return DR_OK;
        snprintf(why, why_len, "not a boolean (true/false)");
        return DR_EINVAL;
    case CONF_LOG_LEVEL:
        if (dr_log_parse_level(value, &level) == DR_OK)
            return DR_OK;
        snprintf(why, why_len, "must be one of trace, debug, info, warn, error, critical, off");
        return DR_EINVAL;
    case CONF_CHOICE:
        return check_choice(spec, value, why, why_len);
    }
    snprintf(why, why_len, "unknown key type");
    return DR_EINVAL;
}

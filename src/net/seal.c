/*
 * Optional encryption of the group port (dr_net_config.encrypt, docs/security.md): after the
 * authenticated handshake, every frame of the connection is sealed with AES-256-GCM (OpenSSL
 * libcrypto). Keys: one per direction, HMAC-SHA256(shared key, "derecho-net-seal-v2" || sender's
 * HELLO || receiver's HELLO), so both nonces make them fresh for each connection. IV: 4 zero
 * bytes then the little-endian count of frames already sealed in that direction (TCP keeps the
 * order; a frame dropped, replayed or moved fails its tag). The 16-byte frame header is the
 * additional authenticated data; its length counts the 16-byte tag that follows the ciphertext.
 *
 * Threads: sealing runs under net->mu (frames of a connection are sealed in the order they are
 * written), opening on the network thread.
 */
#include "net/net_int.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_TAG_BYTES 16u
#define SEAL_IV_BYTES  12u

struct conn_seal {
    EVP_CIPHER_CTX *seal_ctx; /**< our direction (under net->mu) */
    EVP_CIPHER_CTX *open_ctx; /**< the peer's direction (network thread) */
    uint64_t sealed;          /**< frames sealed so far: the next IV */
    uint64_t opened;          /**< frames opened so far */
};

static void derive_key(const uint8_t *key, const uint8_t *first, const uint8_t *second,
                       uint8_t out[32]) {
    static const char label[] = "derecho-net-seal-v2";
    uint8_t input[sizeof label - 1 + 2 * DR_NET_HELLO_BYTES];
    memcpy(input, label, sizeof label - 1);
    memcpy(input + sizeof label - 1, first, DR_NET_HELLO_BYTES);
    memcpy(input + sizeof label - 1 + DR_NET_HELLO_BYTES, second, DR_NET_HELLO_BYTES);
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)DR_NET_KEY_BYTES, input, sizeof input, out, &len);
}

static void make_iv(uint64_t count, uint8_t iv[SEAL_IV_BYTES]) {
    memset(iv, 0, SEAL_IV_BYTES);
    for (int i = 0; i < 8; i++)
        iv[4 + i] = (uint8_t)(count >> (8 * i));
}

int dr_net__seal_init(conn *c, const uint8_t *key) {
    struct conn_seal *s = calloc(1, sizeof *s);
    if (!s)
        return DR_ENOMEM;
    uint8_t mine[32], theirs[32];
    derive_key(key, c->my_hello, c->peer_hello, mine);
    derive_key(key, c->peer_hello, c->my_hello, theirs);
    s->seal_ctx = EVP_CIPHER_CTX_new();
    s->open_ctx = EVP_CIPHER_CTX_new();
    int ok = s->seal_ctx && s->open_ctx &&
             EVP_EncryptInit_ex(s->seal_ctx, EVP_aes_256_gcm(), NULL, mine, NULL) == 1 &&
             EVP_DecryptInit_ex(s->open_ctx, EVP_aes_256_gcm(), NULL, theirs, NULL) == 1;
    memset(mine, 0, sizeof mine);
    memset(theirs, 0, sizeof theirs);
    c->seal = s;
    if (!ok) {
        dr_net__seal_free(c);
        return DR_ENOMEM;
    }
    return DR_OK;
}

void dr_net__seal_free(conn *c) {
    if (!c->seal)
        return;
    EVP_CIPHER_CTX_free(c->seal->seal_ctx);
    EVP_CIPHER_CTX_free(c->seal->open_ctx);
    free(c->seal);
    c->seal = NULL;
}

size_t dr_net__seal_overhead(const conn *c) {
    return c->seal ? SEAL_TAG_BYTES : 0;
}

uint8_t *dr_net__seal_frame(conn *c, uint16_t type, uint32_t flags, const uint8_t *head,
                            size_t head_len, const uint8_t *body, size_t body_len,
                            size_t *sealed_len) {
    struct conn_seal *s = c->seal;
    size_t plain = head_len + body_len;
    uint8_t *out = malloc(plain + SEAL_TAG_BYTES);
    if (!out)
        return NULL;
    uint8_t aad[DR_FRAME_HEADER_BYTES], iv[SEAL_IV_BYTES];
    dr_frame_encode_header(aad, type, flags, (uint32_t)(plain + SEAL_TAG_BYTES));
    make_iv(s->sealed, iv);
    int n = 0, ok = EVP_EncryptInit_ex(s->seal_ctx, NULL, NULL, NULL, iv) == 1 &&
                    EVP_EncryptUpdate(s->seal_ctx, NULL, &n, aad, sizeof aad) == 1;
    size_t done = 0;
    const struct {
        const uint8_t *bytes;
        size_t len;
    } parts[2] = {{head, head_len}, {body, body_len}};
    for (int p = 0; p < 2 && ok; p++)
        for (size_t off = 0; off < parts[p].len && ok;) { /* EVP takes int lengths */
            size_t step = parts[p].len - off < (1u << 30) ? parts[p].len - off : (1u << 30);
            ok = EVP_EncryptUpdate(s->seal_ctx, out + done, &n, parts[p].bytes + off, (int)step) ==
                 1;
            off += step;
            done += (size_t)n;
        }
    ok = ok && EVP_EncryptFinal_ex(s->seal_ctx, out + done, &n) == 1 &&
         EVP_CIPHER_CTX_ctrl(s->seal_ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_BYTES, out + plain) == 1;
    if (!ok) {
        free(out);
        return NULL;
    }
    s->sealed++;
    *sealed_len = plain + SEAL_TAG_BYTES;
    return out;
}

int dr_net__open_frame(conn *c, dr_net_msg *msg) {
    struct conn_seal *s = c->seal;
    if (msg->payload_bytes < SEAL_TAG_BYTES)
        return DR_EPROTO;
    size_t plain = msg->payload_bytes - SEAL_TAG_BYTES;
    uint8_t aad[DR_FRAME_HEADER_BYTES], iv[SEAL_IV_BYTES];
    dr_frame_encode_header(aad, msg->type, msg->flags, msg->payload_bytes);
    make_iv(s->opened, iv);
    int n = 0, ok = EVP_DecryptInit_ex(s->open_ctx, NULL, NULL, NULL, iv) == 1 &&
                    EVP_DecryptUpdate(s->open_ctx, NULL, &n, aad, sizeof aad) == 1;
    for (size_t off = 0; off < plain && ok;) {
        size_t step = plain - off < (1u << 30) ? plain - off : (1u << 30);
        ok = EVP_DecryptUpdate(s->open_ctx, msg->payload + off, &n, msg->payload + off,
                               (int)step) == 1;
        off += step;
    }
    ok = ok &&
         EVP_CIPHER_CTX_ctrl(s->open_ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_BYTES,
                             msg->payload + plain) == 1 &&
         EVP_DecryptFinal_ex(s->open_ctx, msg->payload + plain, &n) == 1;
    if (!ok)
        return DR_EPROTO;
    s->opened++;
    msg->payload_bytes = (uint32_t)plain;
    return DR_OK;
}

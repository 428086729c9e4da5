/* Answer kinds from description texts (answers.h). */
#include "answers.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void sd_tag_answer_clear(sd_tag_answer *answer) {
    free(answer->desc);
    answer->desc = NULL;
    for (uint32_t i = 0; i < answer->n_top && i < SD_MAX_TOP; i++) {
        free(answer->top[i].label);
        answer->top[i].label = NULL;
    }
    answer->n_top = 0;
}

/* The kind of one part (text up to the next " or " or the end). */
static sd_answer_kind part_kind(const char *part) {
    if (strncmp(part, SD_DESC_NO_MODEL, strlen(SD_DESC_NO_MODEL)) == 0)
        return SD_ANSWER_NO_MODEL;
    if (strncmp(part, SD_DESC_LOAD_FAIL, strlen(SD_DESC_LOAD_FAIL)) == 0)
        return SD_ANSWER_LOAD_FAIL;
    if (strncmp(part, SD_DESC_BAD_PHOTO_PREFIX, strlen(SD_DESC_BAD_PHOTO_PREFIX)) == 0)
        return SD_ANSWER_BAD_PHOTO;
    return SD_ANSWER_OK;
}

sd_answer_kind sd_answer_kind_of(const char *desc) {
    static const char separator[] = " or ";
    for (const char *part = desc; part;) {
        sd_answer_kind kind = part_kind(part);
        if (kind != SD_ANSWER_OK)
            return kind;
        const char *next = strstr(part, separator);
        part = next ? next + sizeof separator - 1 : NULL;
    }
    return SD_ANSWER_OK;
}

const char *sd_answer_kind_name(sd_answer_kind kind) {
    switch (kind) {
    case SD_ANSWER_NO_MODEL:
        return "no_model";
    case SD_ANSWER_LOAD_FAIL:
        return "cannot_load_model";
    case SD_ANSWER_BAD_PHOTO:
        return "not_an_image";
    default:
        return "ok";
    }
}

/*
 * Internal loader interfaces: MXNet (symbol JSON + params) and ONNX into an ir_graph, plus
 * the labels-file splitter shared by both.
 */
#ifndef DR_INFER_LOADER_H
#define DR_INFER_LOADER_H

#include "infer/ir.h"

#define LOADER_MAX_NODES  100000
#define LOADER_MAX_ARRAYS 100000
#define LOADER_MAX_KEY    4096
#define LOADER_MAX_LABELS 1000000

/* Parses an MXNet params file into constants of g (names without arg:/aux:). */
int mxnet_load_params(ir_graph *g, const void *params, size_t len, dr_err *err);
/* Parses the symbol JSON, using the constants already in g. Input shape: in_c x in_hw x in_hw
 * when in_hw > 0, else the data node's "__shape__", else 3 x 224 x 224 (g->in_dims). */
int mxnet_load_symbol(ir_graph *g, const void *json, size_t len, int in_c, int in_hw, dr_err *err);
/* Parses an ONNX ModelProto into g. */
int onnx_load(ir_graph *g, const void *bytes, size_t len, dr_err *err);

/* Splits text into lines (trailing \r removed, empty last line dropped). *buf_out owns all. */
int split_lines(const void *text, size_t len, char ***lines_out, size_t *n_out, char **buf_out,
                dr_err *err);

#endif

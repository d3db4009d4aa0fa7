/* safetensors.h - reading Hugging Face safetensors checkpoints: one file or
 * shards listed by model.safetensors.index.json, memory-mapped, every header
 * validated before any tensor is used. */
#ifndef NSQ_SAFETENSORS_H
#define NSQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 1, ST_F16 = 2, ST_BF16 = 3, ST_OTHER = 99 } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    char dtype_name[16];  /* as written in the header, e.g. "BF16", "I64" */
    uint32_t n_dims;
    uint64_t dims[ST_MAX_DIMS];
    uint64_t n_elements;
    const uint8_t *data;  /* inside the shard's mapping */
    uint64_t size;        /* bytes */
    uint32_t shard;       /* index into st_model.shard_paths */
} st_tensor;

typedef struct {
    uint32_t n_shards;
    char **shard_paths;
    void **maps;
    uint64_t *map_lens;
    st_tensor *tensors; /* sorted by name */
    size_t n_tensors;
} st_model;

/* Opens DIR/model.safetensors, or every shard named by
 * DIR/model.safetensors.index.json. On failure returns -1 with a message in
 * err naming the file (and tensor) at fault; m is left empty. */
int st_open_dir(const char *dir, st_model *m, char *err, size_t errlen);
/* Opens and validates a single safetensors file. */
int st_open_file(const char *path, st_model *m, char *err, size_t errlen);
const st_tensor *st_find(const st_model *m, const char *name);
void st_close(st_model *m);

/* Converts n elements of t starting at element i0 to f32. */
void st_to_f32(const st_tensor *t, uint64_t i0, uint64_t n, float *out);

/* Lets the kernel drop t's mapped pages from memory (they stay readable). */
void st_release(const st_tensor *t);

#endif

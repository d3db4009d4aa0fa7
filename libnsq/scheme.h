/* scheme.h - private to libnsq: the storage-scheme table (spec: Storage
 * schemes). One entry per scheme holds everything the rest of the library
 * asks of it, so that adding a scheme is adding an entry and its file:
 * scheme_dense.c (F32, F16, BF16), scheme_tiered.c (TIERED),
 * scheme_lattice.c (LATTICE); scheme.c lists them and runs the public calls
 * that dispatch on a view's scheme. */
#ifndef NSQ_SCHEME_H
#define NSQ_SCHEME_H

#include "internal.h"

typedef struct {
    uint32_t id;        /* nsq_scheme */
    const char *name;   /* lower case, as tools print it */
    uint32_t elem_bits; /* bits of each element of a dense scheme; 0 for a grouped one */
    int grouped;        /* group_size and importance entries apply (refinements: refine_view) */
    /* The tensor record's rules for this scheme (R-TEN-5..9), once its
     * element count, rows and cols are known; refinements: its block's count. */
    nsq_status (*check_record)(const nsq__tensor *t, uint32_t refinements, nsq_diag *d);
    /* nsq_writer_add_tensor's checks before the payload's, for a tensor of
     * this scheme with n_dims dims and n elements; name is for the message. */
    nsq_status (*check_add)(uint32_t scheme, const char *name, uint32_t n_dims, uint64_t n, uint32_t group_size,
                            uint64_t size, nsq_diag *d);
    /* nsq_view_init past the common fields: checks the payload and fills the
     * view's private state. NSQ_E_ARG for a group size the scheme cannot have. */
    nsq_status (*view)(nsq_view *v, nsq_diag *d);
    /* A refinement level of a base view of this scheme (part: its form and
     * size; its offset is not used); NULL without refinements. */
    nsq_status (*refine_view)(const nsq_view *base, const nsq_tensor_refinement *part, const uint8_t *codes,
                              nsq_refine_view *out, nsq_diag *d);
    /* nsq_dequantize_rows with rows [row0, row0 + nrows) inside the matrix. */
    nsq_status (*dequantize)(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t row0,
                             uint64_t nrows, float *out);
} nsq__scheme;

extern const nsq__scheme nsq__scheme_f32, nsq__scheme_f16, nsq__scheme_bf16, nsq__scheme_tiered, nsq__scheme_lattice;

/* The entry of scheme id, or NULL when the format defines no such scheme. */
const nsq__scheme *nsq__scheme_of(uint32_t id);
/* The stages of a LATTICE base view and of its refinement parts 0..n-1
 * together: R-LAT-6 caps them at NSQ_LATTICE_MAX_STAGES. */
uint32_t nsq__lattice_stages(const nsq_view *base, const nsq_tensor_refinement *parts, uint32_t n);
/* Whether a LATTICE base view (NULL: none) or its parts 0..n-1 have an E8S
 * stage, the content required feature bit 3 flags (R-HDR-11). */
int nsq__lattice_e8s(const nsq_view *base, const nsq_tensor_refinement *parts, uint32_t n);
/* A refinement level of base from its record part and its bytes. */
nsq_status nsq__refine_view(const nsq_view *base, const nsq_tensor_refinement *part, const uint8_t *codes,
                            nsq_refine_view *out, nsq_diag *d);

static inline uint64_t nsq__pad64(uint64_t v) { return nsq__align_up(v, NSQ__TENSOR_ALIGN); }

#endif

// Calls made from the C translation unit c_api_from_c.c.
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// FLASHATTN_OK when row 0 of a causal call equals v's row 0 and its lse is
// its one score; a flashattn status, or -1 / -2 for a wrong out / lse.
int c_causal_first_row_is_v0(char* message, size_t message_bytes);
// The status of a call whose k has 3 heads for q's 2.
int c_bad_heads(char* message, size_t message_bytes);

#ifdef __cplusplus
}
#endif

/* SPDX-License-Identifier: MIT */
/* What meraki.c (the client on libcurl) and meraki-answers.c (its pure
 * answer parsing) share; not part of the public API. */
#ifndef BLINKHOOK_MERAKI_INTERNAL_H
#define BLINKHOOK_MERAKI_INTERNAL_H

#include <stdbool.h>

#include "blinkhook/meraki.h"
#include "blinkhook/util.h"

int set_error(struct meraki_result *r, const char *fmt, ...) _printf_(2, 3);
bool valid_id(const char *s);
bool is_list(enum meraki_call_kind kind);

#endif

/* SPDX-License-Identifier: MIT */
#ifndef BLINKHOOK_VERSION_H
#define BLINKHOOK_VERSION_H

#define BLINKHOOK_VERSION "0.3.0"

#endif

/* SPDX-License-Identifier: MIT */
#ifndef BLINKHOOK_VERSION_H
#define BLINKHOOK_VERSION_H

#define BLINKHOOK_VERSION "0.1.0"

#endif

/* SPDX-License-Identifier: MIT */
#ifndef BLINKHOOK_VERSION_H
#define BLINKHOOK_VERSION_H

#define BLINKHOOK_VERSION "0.2.0"

#endif

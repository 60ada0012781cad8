// SPDX-License-Identifier: GPL-2.0
/* qemu_agent with the guest RAM in transparent huge pages. */
#define QEMU_AGENT_THP
#include "qemu_agent.c"

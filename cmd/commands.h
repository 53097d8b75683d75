/* commands.h: the subcommands, one file each in cmd/, and their rows of the command table.
 * Adding a command: declare its function here and add one row to COMMANDS_TABLE. */
#ifndef SMELT_COMMANDS_H
#define SMELT_COMMANDS_H

#include "cmd/cli.h"

#define COMMANDS_TABLE

#endif

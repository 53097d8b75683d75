/* schema.h: the list of forward migrations (store/schema.c). */
#ifndef SMELT_STORE_SCHEMA_H
#define SMELT_STORE_SCHEMA_H

extern const char *const store_migrations[];
extern const int store_n_migrations;

#endif

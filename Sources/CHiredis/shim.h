#ifndef PORTCULLIS_CHIREDIS_SHIM_H
#define PORTCULLIS_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif

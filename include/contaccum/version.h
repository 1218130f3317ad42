#pragma once

/// contaccum's version, `major.minor.patch`.
#define CONTACCUM_VERSION_MAJOR 0
#define CONTACCUM_VERSION_MINOR 1
#define CONTACCUM_VERSION_PATCH 0
#define CONTACCUM_VERSION_STRING "0.1.0"

// PLACEHOLDER until the C ABI lands (owner: vix core engineer).
#include "vixDiskLib.h"

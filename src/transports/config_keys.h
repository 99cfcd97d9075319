// The configuration keys of each transport, declared in its .cc next to the code that reads
// them; vix::config_registry() gathers these lists (so that nothing depends on which object
// files a static link happens to pull in).
#pragma once

#include "common/config_keys.h"

namespace vix {

KeyList file_config_keys();    // file.cc: vixfs.datastore.NAME
KeyList https_config_keys();   // https.cc: vixfs.https.*
KeyList nbd_config_keys();     // nbd.cc: vixfs.nbd.*
KeyList hotadd_config_keys();  // hotadd.cc: vixfs.hotadd.*
KeyList san_config_keys();     // san.cc: vixfs.san.*

}  // namespace vix

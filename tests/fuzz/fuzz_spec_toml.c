/* libFuzzer target: spec_app_parse_toml on arbitrary bytes; the checks (round-trip and
 * copy of every function on success, a well-formed error on failure) are in
 * spec_fuzz_common.h. */
#include <stddef.h>
#include <stdint.h>

#include "spec_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return spec_fuzz_one(spec_app_parse_toml, data, size);
}

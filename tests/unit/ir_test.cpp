#include <doctest/doctest.h>
#include "compiler/ir/builder.h"
TEST_CASE("placeholder") { CHECK(true); }

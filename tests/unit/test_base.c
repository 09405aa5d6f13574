#include <errno.h>
#include <stdlib.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/util.h"
#include "unit.h"

UNIT_TEST(test_buf_append_and_consume)
{
    AUTO_BUF struct buf b = {0};
    buf_append_str(&b, "hello ");
    CHECK(buf_printf(&b, "%s %d", "world", 42) == 0);
    CHECK_STR(b.data, "hello world 42");
    buf_consume(&b, 6);
    CHECK_STR(b.data, "world 42");
    CHECK_EQ_INT(b.len, 8);
}

UNIT_TEST(test_gerr_prefix)
{
    struct gerr e;
    CHECK_EQ_INT(gerr_set(&e, EINVAL, "field %s", "x"), -EINVAL);
    gerr_prefix(&e, "spec");
    CHECK_STR(e.msg, "spec: field x");
}

UNIT_TEST(test_base64_roundtrip)
{
    const char raw[] = {0, 1, 2, (char)0xff, 'a'};
    for (size_t n = 0; n <= sizeof raw; n++) {
        char *enc, *dec;
        size_t el, dl;
        base64_encode(raw, n, &enc, &el);
        CHECK(base64_decode(enc, el, &dec, &dl) == 0);
        CHECK_EQ_INT(dl, n);
        CHECK(memcmp(dec, raw, n) == 0);
        free(enc);
        free(dec);
    }
    char *d;
    size_t dl;
    CHECK(base64_decode("a===", 4, &d, &dl) < 0);
    CHECK(base64_decode("abc", 3, &d, &dl) < 0);
}

UNIT_TEST(test_utf8_and_names)
{
    CHECK(utf8_valid("héllo", strlen("héllo")));
    CHECK(!utf8_valid("\xc3", 1));
    CHECK(!utf8_valid("\xed\xa0\x80", 3));
    CHECK(name_is_valid("my-app_1"));
    CHECK(!name_is_valid("-x"));
    CHECK(!name_is_valid("a.b"));
    CHECK(!name_is_valid(""));
}

UNIT_TEST(test_parse_i64)
{
    int64_t v;
    CHECK(parse_i64("42", 0, 100, &v) == 0 && v == 42);
    CHECK(parse_i64("420", 0, 100, &v) == -ERANGE);
    CHECK(parse_i64("4x", 0, 100, &v) == -EINVAL);
}

UNIT_TEST(test_parse_when)
{
    double t;
    CHECK(parse_when("2026-12-05T14:00:00Z", 0, &t) && t == 1796479200);
    CHECK(parse_when("2026-12-05t14:00:00.5z", 0, &t) && t == 1796479200.5);
    CHECK(parse_when("2026-12-05T15:30:00+01:30", 0, &t) && t == 1796479200);
    CHECK(parse_when("2026-12-05T12:00:00-02:00", 0, &t) && t == 1796479200);
    CHECK(parse_when("1796479200", 0, &t) && t == 1796479200);
    CHECK(parse_when("10m", 1000, &t) && t == 400);
    CHECK(parse_when("2h", 1e9, &t) && t == 1e9 - 7200);
    CHECK(parse_when("7d", 100, &t) && t == 0); /* before the epoch: 0 */
    CHECK(!parse_when("", 0, &t));
    CHECK(!parse_when("yesterday", 0, &t));
    CHECK(!parse_when("-5m", 0, &t));
    CHECK(!parse_when("10w", 0, &t));
    CHECK(!parse_when("2026-02-30T00:00:00Z", 0, &t));  /* no such day */
    CHECK(!parse_when("2026-12-05T14:00:00", 0, &t));   /* no zone */
    CHECK(!parse_when("2026-12-05T14:00:00.Z", 0, &t)); /* no fraction digits */
    CHECK(!parse_when("2026-12-05T24:00:00Z", 0, &t));
    CHECK(!parse_when("2026-12-05T14:00:00Z ", 0, &t));
}

int main(void)
{
    UNIT_RUN(test_buf_append_and_consume);
    UNIT_RUN(test_gerr_prefix);
    UNIT_RUN(test_base64_roundtrip);
    UNIT_RUN(test_utf8_and_names);
    UNIT_RUN(test_parse_i64);
    UNIT_RUN(test_parse_when);
    UNIT_MAIN_END();
}

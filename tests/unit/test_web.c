/* Unit tests for web endpoints' pure parts: the request envelope and response head
 * (src/proto/web.c), path and Host routing (proto/web.c, api/web.c's api_web_route),
 * and the spec's web table (src/spec). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/web.h"
#include "base/buf.h"
#include "http/http.h"
#include "proto/web.h"
#include "spec/spec.h"
#include "unit.h"

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24)};
    buf_append(b, le, 4);
}

static void put_s(struct buf *b, const char *s)
{
    put_u32(b, (uint32_t)strlen(s));
    buf_append(b, s, strlen(s));
}

UNIT_TEST(test_envelope_layout)
{
    struct web_header hs[1] = {{"Accept", 6, "*/*", 3}};
    struct web_request r = {.method = "POST", .scheme = "http", .root_path = "/w/a/l", .path = "/x",
                            .query = "q=1", .client = "", .headers = hs, .nheaders = 1, .body = "BODY",
                            .body_len = 4};
    struct buf b = {0}, want = {0};
    web_request_encode(&b, &r);
    buf_append(&want, WEB_TAG, WEB_TAG_LEN);
    put_s(&want, "POST");
    put_s(&want, "http");
    put_s(&want, "/w/a/l");
    put_s(&want, "/x");
    put_s(&want, "q=1");
    put_s(&want, "");
    put_u32(&want, 1);
    put_s(&want, "Accept");
    put_s(&want, "*/*");
    put_u32(&want, 4); /* the body's length, a u64 (little endian) */
    put_u32(&want, 0);
    buf_append(&want, "BODY", 4);
    CHECK_EQ_INT(b.len, want.len);
    CHECK(memcmp(b.data, want.data, b.len) == 0);
    buf_free(&b);
    buf_free(&want);
}

UNIT_TEST(test_head_decode)
{
    struct buf b = {0};
    put_u32(&b, 201);
    put_u32(&b, 2);
    put_s(&b, "Content-Type");
    put_s(&b, "text/plain");
    put_s(&b, "X-A");
    put_s(&b, "");
    buf_append(&b, "hi", 2);
    struct web_head h;
    const char *why = NULL;
    CHECK_EQ_INT(web_head_decode(b.data, b.len, &h, &why), 0);
    CHECK_EQ_INT(h.status, 201);
    CHECK_EQ_INT(h.nheaders, 2);
    CHECK(h.headers[0].name_len == 12 && !memcmp(h.headers[0].name, "Content-Type", 12));
    CHECK(h.body_len == 2 && !memcmp(h.body, "hi", 2));
    /* Every truncation of it fails cleanly but the ones that cut only the body. */
    for (size_t n = 0; n < b.len - 2; n++)
        CHECK_EQ_INT(web_head_decode(b.data, n, &h, &why), -EBADMSG);
    buf_free(&b);
}

UNIT_TEST(test_head_rejects)
{
    struct web_head h;
    const char *why;
    struct buf b = {0};
    put_u32(&b, 99); /* status out of range */
    put_u32(&b, 0);
    CHECK_EQ_INT(web_head_decode(b.data, b.len, &h, &why), -EBADMSG);
    buf_reset(&b);
    put_u32(&b, 200);
    put_u32(&b, WEB_MAX_HEADERS + 1);
    CHECK_EQ_INT(web_head_decode(b.data, b.len, &h, &why), -EBADMSG);
    /* Response splitting: CR/LF in a value, a non-token name. */
    const char *bad[][2] = {{"X", "a\r\nSet-Cookie: x"}, {"X", "a\nb"}, {"Bad Name", "v"}, {"", "v"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&b);
        put_u32(&b, 200);
        put_u32(&b, 1);
        put_s(&b, bad[i][0]);
        put_s(&b, bad[i][1]);
        CHECK_EQ_INT(web_head_decode(b.data, b.len, &h, &why), -EBADMSG);
    }
    /* A length past the end. */
    buf_reset(&b);
    put_u32(&b, 200);
    put_u32(&b, 1);
    put_u32(&b, 1000);
    CHECK_EQ_INT(web_head_decode(b.data, b.len, &h, &why), -EBADMSG);
    buf_free(&b);
    CHECK(web_header_reserved("Transfer-Encoding", 17));
    CHECK(web_header_reserved("content-length", 14));
    CHECK(!web_header_reserved("Content-Type", 12));
    /* Connection / Upgrade token lists. */
    CHECK(web_header_has_token("Upgrade", 7, "upgrade"));
    CHECK(web_header_has_token("keep-alive, Upgrade", 19, "upgrade"));
    CHECK(web_header_has_token(" websocket ,h2c", 15, "websocket"));
    CHECK(!web_header_has_token("upgrades", 8, "upgrade"));
    CHECK(!web_header_has_token("websocket/13", 12, "websocket"));
    CHECK(!web_header_has_token("upgrade", 6, "upgrade")); /* bounded by len */
    CHECK(!web_header_has_token("", 0, "upgrade"));
}

/* The C runner's side of the envelope: what web_request_encode writes decodes to the
 * same request (in place, NUL-terminated), every truncation and a NUL in a string
 * are refused, and the body is left as it is. */
UNIT_TEST(test_envelope_decode)
{
    struct web_header hs[2] = {{"Accept", 6, "*/*", 3}, {"X-Empty", 7, "", 0}};
    struct web_request r = {.method = "POST", .scheme = "https", .root_path = "/w/a/l", .path = "/x",
                            .query = "q=1", .client = "10.0.0.1", .headers = hs, .nheaders = 2,
                            .body = "B\0DY", .body_len = 4};
    struct buf b = {0};
    web_request_encode(&b, &r);
    struct web_header got_h[WEB_MAX_HEADERS];
    struct web_request got;
    const char *why = NULL;
    for (size_t n = 0; n < b.len - r.body_len; n++) {
        char *copy = malloc(n + 1);
        memcpy(copy, b.data, n);
        CHECK_EQ_INT(web_request_decode(copy, n, &got, got_h, &why), -EBADMSG);
        CHECK(why != NULL);
        free(copy);
    }
    CHECK_EQ_INT(web_request_decode(b.data, b.len, &got, got_h, &why), 0);
    CHECK_STR(got.method, "POST");
    CHECK_STR(got.scheme, "https");
    CHECK_STR(got.root_path, "/w/a/l");
    CHECK_STR(got.path, "/x");
    CHECK_STR(got.query, "q=1");
    CHECK_STR(got.client, "10.0.0.1");
    CHECK_EQ_INT(got.nheaders, 2);
    CHECK(got.headers == got_h);
    CHECK(got_h[0].name_len == 6 && !strcmp(got_h[0].name, "Accept") && !strcmp(got_h[0].value, "*/*"));
    CHECK(got_h[1].value_len == 0 && !strcmp(got_h[1].value, ""));
    CHECK(web_request_header(&got, "ACCEPT") == &got_h[0] && !web_request_header(&got, "Accep"));
    CHECK(got.body_len == 4 && !memcmp(got.body, "B\0DY", 4));
    buf_free(&b);
    /* Not an envelope, a NUL inside a string, too many headers. */
    char plain[] = "hello";
    CHECK_EQ_INT(web_request_decode(plain, 5, &got, got_h, &why), -EBADMSG);
    buf_append(&b, WEB_TAG, WEB_TAG_LEN);
    put_u32(&b, 2);
    buf_append(&b, "G\0", 2);
    CHECK_EQ_INT(web_request_decode(b.data, b.len, &got, got_h, &why), -EBADMSG);
    CHECK(strstr(why, "NUL"));
    buf_reset(&b);
    buf_append(&b, WEB_TAG, WEB_TAG_LEN);
    for (int i = 0; i < 6; i++)
        put_s(&b, "x");
    put_u32(&b, WEB_MAX_HEADERS + 1);
    CHECK_EQ_INT(web_request_decode(b.data, b.len, &got, got_h, &why), -EBADMSG);
    buf_free(&b);
}

/* web_head_encode writes what web_head_decode reads, and refuses what it refuses. */
UNIT_TEST(test_head_encode)
{
    struct web_header hs[2] = {{"Content-Type", 12, "text/plain", 10}, {"X-A", 3, "", 0}};
    struct buf b = {0};
    const char *why = NULL;
    CHECK_EQ_INT(web_head_encode(&b, 201, hs, 2, "hi", 2, &why), 0);
    struct web_head h;
    CHECK_EQ_INT(web_head_decode(b.data, b.len, &h, &why), 0);
    CHECK(h.status == 201 && h.nheaders == 2 && h.body_len == 2 && !memcmp(h.body, "hi", 2));
    CHECK(h.headers[1].name_len == 3 && h.headers[1].value_len == 0);
    size_t len = b.len;
    struct web_header bad[1] = {{"X", 1, "a\r\nSet-Cookie: x", 16}};
    CHECK_EQ_INT(web_head_encode(&b, 200, bad, 1, NULL, 0, &why), -EINVAL);
    CHECK(strstr(why, "CR"));
    CHECK_EQ_INT(web_head_encode(&b, 600, NULL, 0, NULL, 0, &why), -EINVAL);
    CHECK_EQ_INT(web_head_encode(&b, 200, hs, WEB_MAX_HEADERS + 1, NULL, 0, &why), -EINVAL);
    CHECK_EQ_INT(b.len, len); /* b unchanged by a refusal */
    buf_free(&b);
}

UNIT_TEST(test_split_path_and_host)
{
    char ws[64], app[64], label[64], al[64];
    const char *rest;
    CHECK_EQ_INT(web_split_path("/w/a/l/x/y", ws, app, label, 64, &rest), 0);
    CHECK(!strcmp(ws, "w") && !strcmp(app, "a") && !strcmp(label, "l") && !strcmp(rest, "/x/y"));
    CHECK_EQ_INT(web_split_path("/w/a/l", ws, app, label, 64, &rest), 0);
    CHECK(!strcmp(rest, ""));
    CHECK_EQ_INT(web_split_path("/w/a", ws, app, label, 64, &rest), -EINVAL);
    CHECK_EQ_INT(web_split_path("/w//l", ws, app, label, 64, &rest), -EINVAL);
    CHECK_EQ_INT(web_split_path("/w/a%2f/l", ws, app, label, 64, &rest), -EINVAL);
    CHECK_EQ_INT(web_split_host("WS--My-App-label.gust.test:8480", "gust.test", ws, al, 64), 0);
    CHECK(!strcmp(ws, "ws") && !strcmp(al, "my-app-label"));
    CHECK_EQ_INT(web_split_host("ws--a-b.other.test", "gust.test", ws, al, 64), -ENOENT);
    CHECK_EQ_INT(web_split_host("gust.test", "gust.test", ws, al, 64), -ENOENT);
    CHECK_EQ_INT(web_split_host("x.y.gust.test", "gust.test", ws, al, 64), -EINVAL);
    CHECK_EQ_INT(web_split_host("nodashes.gust.test", "gust.test", ws, al, 64), -EINVAL);
    CHECK_EQ_INT(web_split_host("evilgust.test", "gust.test", ws, al, 64), -ENOENT);
}

/* A request as the parser gives it, with only Host set (or none). */
static int route(const char *path, const char *host, const char *domain, struct api_web_route *rt)
{
    struct http_header h = {"Host", host, 4, host ? strlen(host) : 0};
    struct http_request req = {.method = "GET", .path = path, .query = "", .headers = &h, .nheaders = host ? 1 : 0};
    struct api_guard g = {.hosts = {"gust.example"}, .nhosts = 1};
    return api_web_route(&g, domain, &req, rt);
}

UNIT_TEST(test_route)
{
    struct api_web_route rt;
    CHECK_EQ_INT(route("/w/a/l/rest", "127.0.0.1:8480", NULL, &rt), 0);
    CHECK(!rt.by_host && !strcmp(rt.root_path, "/w/a/l") && !strcmp(rt.rest, "/rest"));
    CHECK_EQ_INT(route("/w/a/l", NULL, NULL, &rt), 0);
    CHECK(!strcmp(rt.rest, "/"));
    CHECK_EQ_INT(route("/w/a/l", "gust.example", NULL, &rt), 0);
    /* DNS rebinding: another name in Host is refused, with or without a domain. */
    CHECK_EQ_INT(route("/w/a/l", "evil.example:8480", NULL, &rt), -EACCES);
    CHECK_EQ_INT(route("/w/a/l", "evil.example", "gust.test", &rt), -EACCES);
    CHECK_EQ_INT(route("/only", "localhost", NULL, &rt), -ENOENT);
    CHECK_EQ_INT(route("/x?y", "w--app-l.gust.test", "gust.test", &rt), 0);
    CHECK(rt.by_host && !strcmp(rt.ws, "w") && !strcmp(rt.app_label, "app-l") && !strcmp(rt.root_path, ""));
    CHECK_EQ_INT(route("/w/a/l", "gust.test", "gust.test", &rt), 0); /* the domain itself: path form */
    CHECK_EQ_INT(route("/w/a/l", "a.b.gust.test", "gust.test", &rt), -ENOENT);
}

static int parse(const char *json, struct spec_app *app, char field[SPEC_FIELD_MAX], struct gerr *err)
{
    return spec_app_parse_json(json, strlen(json), app, field, err);
}

#define FN_HEAD "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"x\"],\"mode\":\"runner\","

UNIT_TEST(test_spec_web)
{
    struct spec_app app;
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    CHECK_EQ_INT(parse(FN_HEAD "\"web\":{}}]}", &app, field, &err), 0);
    CHECK_EQ_INT(app.functions[0].web.kind, SPEC_WEB_FUNCTION);
    CHECK(!strcmp(app.functions[0].web.method, "GET") && !strcmp(app.functions[0].web.label, "f"));
    CHECK(!app.functions[0].web.public_);
    json_t *j = spec_function_to_json(&app.functions[0]);
    CHECK(j && json_is_object(json_object_get(j, "web")));
    struct spec_function back;
    CHECK_EQ_INT(spec_function_from_json(j, &back, field, &err), 0);
    CHECK(back.web.kind == SPEC_WEB_FUNCTION && !strcmp(back.web.label, "f"));
    spec_function_free(&back);
    json_decref(j);
    spec_app_free(&app);
    CHECK_EQ_INT(parse(FN_HEAD "\"web\":{\"kind\":\"asgi\",\"label\":\"api\",\"public\":true}}]}", &app, field, &err),
                 0);
    CHECK(app.functions[0].web.kind == SPEC_WEB_ASGI && !strcmp(app.functions[0].web.method, "*"));
    CHECK(app.functions[0].web.public_);
    spec_app_free(&app);
    /* A C runner's endpoint (examples/web_c): kind "function", every method its own. */
    CHECK_EQ_INT(parse(FN_HEAD "\"web\":{\"kind\":\"function\",\"method\":\"*\",\"label\":\"api\"}}]}", &app,
                       field, &err),
                 0);
    CHECK(app.functions[0].web.kind == SPEC_WEB_FUNCTION && !strcmp(app.functions[0].web.method, "*"));
    spec_app_free(&app);
    /* Errors name the field. */
    CHECK(parse(FN_HEAD "\"web\":{\"kind\":\"cgi\"}}]}", &app, field, &err) < 0);
    CHECK(!strcmp(field, "functions[0].web.kind"));
    CHECK(parse(FN_HEAD "\"web\":{\"method\":\"get\"}}]}", &app, field, &err) < 0);
    CHECK(!strcmp(field, "functions[0].web.method"));
    CHECK(parse(FN_HEAD "\"web\":{\"label\":\"a/b\"}}]}", &app, field, &err) < 0);
    CHECK(!strcmp(field, "functions[0].web.label"));
    CHECK(parse(FN_HEAD "\"web\":{\"public\":1}}]}", &app, field, &err) < 0);
    CHECK(!strcmp(field, "functions[0].web.public"));
    CHECK(parse(FN_HEAD "\"web\":{\"x\":1}}]}", &app, field, &err) < 0);
    CHECK(parse("{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"x\"],\"web\":{}}]}",
                &app, field, &err) < 0);
    CHECK(!strcmp(field, "functions[0].web"));
    CHECK(strstr(err.msg, "runner.h"));
    CHECK(parse("{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"x\"],\"mode\":"
                "\"runner\",\"web\":{\"label\":\"L\"}},{\"name\":\"g\",\"kind\":\"exec\",\"command\":[\"x\"],\"mode\":"
                "\"runner\",\"web\":{\"label\":\"l\"}}]}",
                &app, field, &err) < 0);
    CHECK(!strcmp(field, "functions[1].web.label"));
}

/* kind "web_server": port needed (1..65535), startup_timeout above 0 (default 5 s); both
 * refused on other kinds; both kept through the normalised form. */
UNIT_TEST(test_spec_web_server)
{
    struct spec_app app;
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    CHECK_EQ_INT(parse(FN_HEAD "\"web\":{\"kind\":\"web_server\",\"port\":8000}}]}", &app, field, &err), 0);
    const struct spec_web *w = &app.functions[0].web;
    CHECK(w->kind == SPEC_WEB_SERVER && w->port == 8000 && w->startup_timeout_s == 5.0 && !strcmp(w->method, "*"));
    json_t *j = spec_function_to_json(&app.functions[0]);
    json_t *jw = json_object_get(j, "web");
    CHECK(!strcmp(json_string_value(json_object_get(jw, "kind")), "web_server"));
    CHECK(json_integer_value(json_object_get(jw, "port")) == 8000);
    CHECK(json_real_value(json_object_get(jw, "startup_timeout")) == 5.0);
    struct spec_function back;
    CHECK_EQ_INT(spec_function_from_json(j, &back, field, &err), 0);
    CHECK(back.web.kind == SPEC_WEB_SERVER && back.web.port == 8000 && back.web.startup_timeout_s == 5.0);
    spec_function_free(&back);
    json_decref(j);
    spec_app_free(&app);
    CHECK_EQ_INT(parse(FN_HEAD "\"web\":{\"kind\":\"web_server\",\"port\":1,\"startup_timeout\":0.5}}]}", &app,
                       field, &err),
                 0);
    CHECK(app.functions[0].web.port == 1 && app.functions[0].web.startup_timeout_s == 0.5);
    spec_app_free(&app);
    /* Other kinds carry neither in their normalised form. */
    CHECK_EQ_INT(parse(FN_HEAD "\"web\":{}}]}", &app, field, &err), 0);
    j = spec_function_to_json(&app.functions[0]);
    CHECK(!json_object_get(json_object_get(j, "web"), "port"));
    CHECK(!json_object_get(json_object_get(j, "web"), "startup_timeout"));
    json_decref(j);
    spec_app_free(&app);
    static const struct {
        const char *web, *field;
    } bad[] = {
        {"{\"kind\":\"web_server\"}", "functions[0].web.port"},
        {"{\"kind\":\"web_server\",\"port\":0}", "functions[0].web.port"},
        {"{\"kind\":\"web_server\",\"port\":65536}", "functions[0].web.port"},
        {"{\"kind\":\"web_server\",\"port\":\"80\"}", "functions[0].web.port"},
        {"{\"kind\":\"web_server\",\"port\":80,\"startup_timeout\":0}", "functions[0].web.startup_timeout"},
        {"{\"kind\":\"web_server\",\"port\":80,\"startup_timeout\":-1}", "functions[0].web.startup_timeout"},
        {"{\"kind\":\"web_server\",\"port\":80,\"startup_timeout\":4000}", "functions[0].web.startup_timeout"},
        {"{\"kind\":\"asgi\",\"port\":80}", "functions[0].web.port"},
        {"{\"startup_timeout\":3}", "functions[0].web.startup_timeout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, FN_HEAD "\"web\":%s}]}", bad[i].web);
        CHECK(parse(json, &app, field, &err) < 0);
        CHECK_STR(field, bad[i].field);
    }
}

int main(void)
{
    UNIT_RUN(test_envelope_layout);
    UNIT_RUN(test_head_decode);
    UNIT_RUN(test_head_rejects);
    UNIT_RUN(test_envelope_decode);
    UNIT_RUN(test_head_encode);
    UNIT_RUN(test_split_path_and_host);
    UNIT_RUN(test_route);
    UNIT_RUN(test_spec_web);
    UNIT_RUN(test_spec_web_server);
    UNIT_MAIN_END();
}

/*
 * Reading JUnit XML as the frameworks write it (pytest --junitxml, ctest
 * --output-junit, Maven Surefire and others): testcases inside testsuites,
 * each with an optional failure, error or skipped element and its output.
 *
 * A report is the test's output, so hostile: it is read whole up to a cap,
 * parsed without network access, without a DTD loaded and without libxml2's
 * XML_PARSE_HUGE (its limits on depth and names stay), and refused when it
 * declares any entity. Entities are refused rather than expanded: even
 * unexpanded in the tree, xmlNodeGetContent() and xmlGetProp() would expand
 * nested ones afterwards (a 700-byte "billion laughs" is gigabytes), and no
 * framework writes them.
 */
#define _GNU_SOURCE 1
#include "junit_import.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static char *attr(const xmlNode *n, const char *name)
{
    return (char *)xmlGetProp(n, (const xmlChar *)name);
}

static int one_case(const xmlNode *tc, junit_case_fn fn, void *ud)
{
    char *name = attr(tc, "name"), *cls = attr(tc, "classname"), *time = attr(tc, "time");
    char *message = NULL, *type = NULL, *details = NULL, *out = NULL, *err = NULL;
    junit_case c = { .outcome = JU_PASS };

    for (const xmlNode *k = tc->children; k; k = k->next) {
        bool fail = is(k, "failure"), error = is(k, "error"), skip = is(k, "skipped");
        if ((fail || error || skip) && c.outcome != JU_ERROR) {
            /* The worst wins: error over failure over skipped. */
            if (!(skip && c.outcome == JU_FAIL)) {
                xmlFree(message);
                xmlFree(type);
                xmlFree(details);
                message = attr(k, "message");
                type = attr(k, "type");
                details = (char *)xmlNodeGetContent(k);
                c.outcome = error ? JU_ERROR : fail ? JU_FAIL : JU_SKIP;
            }
        } else if (is(k, "system-out") && !out) {
            out = (char *)xmlNodeGetContent(k);
        } else if (is(k, "system-err") && !err) {
            err = (char *)xmlNodeGetContent(k);
        }
    }
    c.name = name && *name ? name : "(unnamed)";
    c.classname = cls ? cls : "";
    c.message = message && *message ? message : NULL;
    c.type = type && *type ? type : NULL;
    c.details = details && *details ? details : NULL;
    c.system_out = out && *out ? out : NULL;
    c.system_err = err && *err ? err : NULL;
    c.seconds = time ? strtod(time, NULL) : 0;
    if (c.seconds < 0)
        c.seconds = 0;
    int stop = fn(ud, &c);
    xmlFree(name);
    xmlFree(cls);
    xmlFree(time);
    xmlFree(message);
    xmlFree(type);
    xmlFree(details);
    xmlFree(out);
    xmlFree(err);
    return stop;
}

/* Recursive, but libxml2 (without XML_PARSE_HUGE) nests elements at most
 * 256 deep. */
static int walk(const xmlNode *n, junit_case_fn fn, void *ud, size_t *cases)
{
    int stop = 0;

    for (; n && !stop; n = n->next) {
        if (is(n, "testcase")) {
            stop = one_case(n, fn, ud);
            (*cases)++;
        } else if (is(n, "testsuite") || is(n, "testsuites")) {
            stop = walk(n->children, fn, ud, cases);
        }
    }
    return stop;
}

/* Any declaration stops the parse: the report is refused. */
/* What the parse watches: entities (refused) and how many nodes the tree
 * gets (each costs libxml2 a hundred bytes or more, 30 times the text of
 * "<a/>": a report of nothing but nodes is refused past JUNIT_NODES_MAX). */
typedef struct watch {
    bool entities;
    size_t nodes;
    startElementNsSAX2Func start;
    charactersSAXFunc characters;
} watch;

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    xmlParserCtxtPtr ctxt = ctx;

    (void)name, (void)type, (void)public_id, (void)system_id, (void)content;
    ((watch *)ctxt->_private)->entities = true;
    xmlStopParser(ctxt);
}

static void count(xmlParserCtxtPtr ctxt, size_t n)
{
    watch *w = ctxt->_private;
    if ((w->nodes += n) > JUNIT_NODES_MAX)
        xmlStopParser(ctxt);
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                     const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                     int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = ctx;
    count(ctxt, 1 + (size_t)(nb_attributes > 0 ? nb_attributes : 0));
    if (((watch *)ctxt->_private)->nodes <= JUNIT_NODES_MAX)
        ((watch *)ctxt->_private)->start(ctx, localname, prefix, uri, nb_namespaces, namespaces,
                                         nb_attributes, nb_defaulted, attributes);
}

static void on_characters(void *ctx, const xmlChar *ch, int len)
{
    xmlParserCtxtPtr ctxt = ctx;
    count(ctxt, 1);
    if (((watch *)ctxt->_private)->nodes <= JUNIT_NODES_MAX)
        ((watch *)ctxt->_private)->characters(ctx, ch, len);
}

static void on_unparsed_entity_decl(void *ctx, const xmlChar *name, const xmlChar *public_id,
                                    const xmlChar *system_id, const xmlChar *notation)
{
    on_entity_decl(ctx, name, 0, public_id, system_id, (xmlChar *)notation);
}

/* The whole file, if it is at most JUNIT_REPORT_MAX bytes: 0, 1 when it is
 * longer, -errno. */
static int read_capped(const char *path, char **out, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), e = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        if (n == cap || !buf) {
            if (buf)
                cap *= 2;
            /* One byte past the cap tells a longer file. */
            if (cap > JUNIT_REPORT_MAX + 1)
                cap = JUNIT_REPORT_MAX + 1;
            char *b = realloc(buf, cap);
            if (!b) {
                e = -ENOMEM;
                break;
            }
            buf = b;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            e = -errno;
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > JUNIT_REPORT_MAX) {
            e = 1;
            break;
        }
    }
    close(fd);
    if (e) {
        free(buf);
        return e;
    }
    *out = buf;
    *len = n;
    return 0;
}

int junit_import_buffer(const char *text, size_t len, const char *name, junit_case_fn fn,
                        void *ud, size_t *cases, char *why, size_t whylen)
{
    xmlParserCtxtPtr ctxt;
    xmlDoc *doc;
    watch w = { 0 };
    int r;

    *cases = 0;
    if (len > JUNIT_REPORT_MAX) {
        snprintf(why, whylen, "the JUnit report %s is longer than %u MiB: not read", name,
                 (unsigned)(JUNIT_REPORT_MAX >> 20));
        return -1;
    }
    if (!(ctxt = xmlNewParserCtxt())) {
        snprintf(why, whylen, "the JUnit report %s cannot be read: out of memory", name);
        return -1;
    }
    ctxt->_private = &w;
    ctxt->sax->entityDecl = on_entity_decl;
    ctxt->sax->unparsedEntityDecl = on_unparsed_entity_decl;
    w.start = ctxt->sax->startElementNs;
    w.characters = ctxt->sax->characters;
    if (w.start)
        ctxt->sax->startElementNs = on_start;
    if (w.characters)
        ctxt->sax->characters = on_characters;
    /* No XML_PARSE_NOENT, _DTDLOAD, _DTDVALID, _XINCLUDE or _HUGE: nothing
     * is substituted or fetched, and libxml2's limits hold. */
    doc = xmlCtxtReadMemory(ctxt, len ? text : "", (int)len, name, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (w.nodes > JUNIT_NODES_MAX) {
        xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        snprintf(why, whylen, "the JUnit report %s has more than %u elements, attributes and "
                 "texts: not read", name, (unsigned)JUNIT_NODES_MAX);
        return -1;
    }
    if (w.entities) {
        xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        snprintf(why, whylen, "the JUnit report %s declares entities (<!ENTITY>), which atx "
                 "does not expand: not read", name);
        return -1;
    }
    if (!doc || !ctxt->wellFormed) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        snprintf(why, whylen, "the JUnit report %s is not XML%s%s", name,
                 e && e->message ? ": " : "", e && e->message ? e->message : "");
        /* libxml's message ends in a newline. */
        size_t n = strlen(why);
        while (n && (why[n - 1] == '\n' || why[n - 1] == ' '))
            why[--n] = '\0';
        xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        return -1;
    }
    xmlFreeParserCtxt(ctxt);
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !(is(root, "testsuites") || is(root, "testsuite"))) {
        snprintf(why, whylen, "the JUnit report %s has no <testsuites> or <testsuite> root "
                 "(found <%s>)", name, root ? (const char *)root->name : "nothing");
        xmlFreeDoc(doc);
        return -1;
    }
    r = walk(root, fn, ud, cases);
    xmlFreeDoc(doc);
    return r;
}

int junit_import_file(const char *path, junit_case_fn fn, void *ud, size_t *cases, char *why,
                      size_t whylen)
{
    char *text = NULL;
    size_t len = 0;
    int r;

    *cases = 0;
    r = read_capped(path, &text, &len);
    if (r == 1) {
        snprintf(why, whylen, "the JUnit report %s is longer than %u MiB: not read", path,
                 (unsigned)(JUNIT_REPORT_MAX >> 20));
        return -1;
    }
    if (r == -ENOENT || r == -ENOTDIR) {
        snprintf(why, whylen, "the JUnit report %s was not written", path);
        return -1;
    }
    if (r < 0) {
        snprintf(why, whylen, "the JUnit report %s cannot be read: %s", path, strerror(-r));
        return -1;
    }
    r = junit_import_buffer(text, len, path, fn, ud, cases, why, whylen);
    free(text);
    return r;
}

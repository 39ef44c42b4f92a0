/*
 * Reading JUnit XML as the frameworks write it (pytest --junitxml, ctest
 * --output-junit, Maven Surefire and others): testcases inside testsuites,
 * each with an optional failure, error or skipped element and its output.
 * The file is parsed without network access and without expanding
 * external entities.
 */
#include "junit_import.h"

#include <stdbool.h>

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

static void one_case(const xmlNode *tc, junit_case_fn fn, void *ud)
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
    fn(ud, &c);
    xmlFree(name);
    xmlFree(cls);
    xmlFree(time);
    xmlFree(message);
    xmlFree(type);
    xmlFree(details);
    xmlFree(out);
    xmlFree(err);
}

static void walk(const xmlNode *n, junit_case_fn fn, void *ud, size_t *cases)
{
    for (; n; n = n->next) {
        if (is(n, "testcase")) {
            one_case(n, fn, ud);
            (*cases)++;
        } else if (is(n, "testsuite") || is(n, "testsuites")) {
            walk(n->children, fn, ud, cases);
        }
    }
}

int junit_import_file(const char *path, junit_case_fn fn, void *ud, size_t *cases, char *why,
                      size_t whylen)
{
    xmlDoc *doc;
    FILE *f = fopen(path, "r");

    *cases = 0;
    if (!f) {
        snprintf(why, whylen, "the JUnit report %s was not written", path);
        return -1;
    }
    fclose(f);
    doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                      XML_PARSE_HUGE);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        snprintf(why, whylen, "the JUnit report %s is not XML%s%s", path,
                 e && e->message ? ": " : "", e && e->message ? e->message : "");
        /* libxml's message ends in a newline. */
        size_t n = strlen(why);
        while (n && (why[n - 1] == '\n' || why[n - 1] == ' '))
            why[--n] = '\0';
        return -1;
    }
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !(is(root, "testsuites") || is(root, "testsuite"))) {
        snprintf(why, whylen, "the JUnit report %s has no <testsuites> or <testsuite> root "
                 "(found <%s>)", path, root ? (const char *)root->name : "nothing");
        xmlFreeDoc(doc);
        return -1;
    }
    walk(root, fn, ud, cases);
    xmlFreeDoc(doc);
    return 0;
}

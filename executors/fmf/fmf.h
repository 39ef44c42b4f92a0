/*
 * fmf metadata reader: loads an fmf tree (https://fmf.readthedocs.io) into
 * resolved per-node JSON, and evaluates fmf filters and context conditions.
 *
 * Private to the fmf executor; C11, depends on libyaml, json-c and libc.
 *
 * Errors: every function that can fail returns a negative value and writes
 * ONE line into err (if err is not NULL and errlen > 0), shaped
 * "<file>:<line>: <what>"; the line is left out where none applies. err is
 * always NUL-terminated and never longer than errlen - 1 bytes.
 *
 * Threads: no global mutable state. Different trees may be used from
 * different threads at once; a loaded tree is read-only and may be shared
 * between threads for reading. json objects handed out are owned by the tree
 * and must not be modified (json-c reference counts are not atomic: take
 * json_object_deep_copy() before handing data to another thread that keeps
 * it past fmf_tree_free()).
 */
#ifndef ATX_FMF_H
#define ATX_FMF_H

#include <stddef.h>
#include <stdint.h>

struct json_object;

/* Limits against hostile input. */
#define FMF_MAX_FILE_SIZE (16u * 1024u * 1024u) /* bytes per .fmf file */
#define FMF_MAX_YAML_DEPTH 64                   /* nested YAML collections */
#define FMF_MAX_NODE_DEPTH 256                  /* nested tree nodes */
#define FMF_MAX_ALIAS_NODES 100000              /* values copied by aliases, per file */
#define FMF_MAX_VALUES 1000000                  /* YAML values per file */
#define FMF_MAX_NODES 1000000                   /* nodes per tree */

/* tmt's default test duration (5m), in seconds: what a duration of factors
 * alone multiplies. */
#define FMF_DEFAULT_DURATION 300
/* The longest duration fmf_duration() accepts, in seconds: its nanoseconds
 * still fit in an int64_t (about 292 years). */
#define FMF_MAX_DURATION (INT64_MAX / 1000000000)

/* Flags for the _ex functions. */
enum {
    /* Compare context values ignoring (ASCII) case, as tmt does when it
     * adjusts (fmf's default is case-sensitive). Regular expressions (~, !~)
     * stay case-sensitive, as in fmf. */
    FMF_CASE_INSENSITIVE = 1u << 0,
};

typedef struct fmf_tree fmf_tree;

typedef struct fmf_node {
    const char *name;          /* "/dir/sub/leaf"; the tree root is "/" */
    const char *dir;           /* absolute folder of the file that defines the node */
    const char *file;          /* the .fmf file that defined it (the last one merged);
                                * NULL for a folder without metadata of its own
                                * whose ancestors have none either */
    int line;                  /* line of its definition in that file (1-based); 0 if no file */
    struct json_object *data;  /* resolved metadata: inherited, merged, adjusted; an object */
    const char *error;         /* NULL; or why the metadata is not whole, one line
                                * "<file>:<line>: <node>: <what>": a key that does not
                                * merge (here or in a node this one inherits from: then
                                * the message is that node's, shared) or a bad adjust
                                * rule. data then holds what could be resolved: the
                                * other keys, the rules before the bad one. */
} fmf_node;

/*
 * Load the tree rooted at root: a folder holding .fmf/version (an integer).
 * context: a json object whose values are strings (or arrays of strings,
 * several values for one dimension), e.g. {"distro":"debian-12"}; may be
 * NULL (no dimension defined). It is used for `adjust`.
 *
 * Every *.fmf file of every folder is read (hidden files and folders are
 * skipped, and so are folders holding their own .fmf: separate trees).
 * Nodes inherit their parent's data, merge suffixed keys (+ +< - -~ ~),
 * then apply their `adjust` rules; `adjust` is removed from the result.
 *
 * Returns 0 and a tree in *out (free with fmf_tree_free), or a negative
 * value with the reason in err (*out untouched). Thread-safe. What is wrong
 * with the tree as a whole fails the load: a file that cannot be read or
 * is not YAML, a bad .fmf/version, bad node names or directives, a limit
 * above. What is wrong with one node's metadata (a merge, an adjust rule)
 * does not: the node's error says it, and the other nodes are whole.
 */
int fmf_tree_load(const char *root, const struct json_object *context, fmf_tree **out,
                  char *err, size_t errlen);
/* The same, with FMF_* flags. */
int fmf_tree_load_ex(const char *root, const struct json_object *context, unsigned flags,
                     fmf_tree **out, char *err, size_t errlen);

/* The selected nodes (leaves, and nodes with the `select: true` directive,
 * without those with `select: false`), in fmf's order: depth first, siblings
 * sorted by name (bytewise). */
size_t fmf_tree_count(const fmf_tree *t);
/* The i-th selected node (borrowed; NULL if i is out of range). */
const fmf_node *fmf_tree_node(const fmf_tree *t, size_t i);
/* Any node of the tree by its name, selected or not (e.g. "/" or a branch);
 * NULL if there is none. Borrowed. */
const fmf_node *fmf_tree_find(const fmf_tree *t, const char *name);
/* The absolute, symlink-free path of the tree root (borrowed). */
const char *fmf_tree_root(const fmf_tree *t);
/*
 * Where the node's resolved key was set: the file and line of the adjust
 * key when an adjust rule that applied set it, else of the key (plain or
 * with a merge suffix) in the node or the nearest node it inherits from;
 * the node's own file and line when none has it. *file is borrowed from
 * the tree (NULL, with *line 0, for a node without a file).
 */
void fmf_node_where(const fmf_tree *t, const fmf_node *n, const char *key, const char **file,
                    int *line);
/* Frees the tree and every node and json object it owns. NULL is fine. */
void fmf_tree_free(fmf_tree *t);

/* 1 if the node is a test: has `test`, `enabled` is not false, `manual` is
 * not true, and it is not a story (no `story` key). 0 otherwise (and for NULL). */
int fmf_node_is_test(const fmf_node *n);

/*
 * fmf filter expression (as fmf's Tree.prune uses them, regular expressions
 * on) against node data: "tag: smoke & tier: 1 | tag: -slow".
 * '|' separates clauses (any may match), '&' literals (all must match);
 * a literal is "key: value, value" (any value may match); a value starting
 * with '-' matches when no item of the key does. Values are regular
 * expressions matched against the whole item; data values that are lists
 * are matched item by item, other values as their Python str().
 * A key named anywhere in the filter but missing from data makes the whole
 * filter not match (fmf evaluates every clause, and its prune takes the
 * error as "no match"): "tag: -slow" does not select nodes without tag.
 * Returns 1 match, 0 no match, negative for a bad expression or data that
 * is not an object (message in err). An empty or NULL expression matches.
 */
int fmf_filter(const char *expr, const struct json_object *data, char *err, size_t errlen);

/*
 * fmf context condition against a context (as for fmf_tree_load):
 * "distro == fedora-33 and arch != aarch64", "distro < debian-12",
 * "initiator is defined", "distro ~ ^fedora", "arch == x86_64, ppc64le".
 * Returns 1 true, 0 false, -1 cannot decide (a dimension is missing or no
 * value could be compared), -2 bad expression (message in err).
 */
int fmf_condition(const char *expr, const struct json_object *context, char *err, size_t errlen);
/* The same, with FMF_* flags. */
int fmf_condition_ex(const char *expr, const struct json_object *context, unsigned flags,
                     char *err, size_t errlen);

/*
 * Merge src into data (both objects) the way a child's keys merge into the
 * data inherited from its parent: "key" replaces, "key+" adds (appends to
 * lists, concatenates strings, adds numbers, merges dictionaries), "key+<"
 * prepends, "key-" removes (list items, dictionary keys, a regex from a
 * string, subtracts numbers), "key-~" removes what matches regexes, "key~"
 * substitutes ("/pattern/replacement/"). Values are copied. Returns 0, or a
 * negative value with the reason in err (data may then be partly merged).
 */
int fmf_merge(struct json_object *data, const struct json_object *src, char *err, size_t errlen);

/*
 * Apply the `adjust` rules found in data (an object) for context, then
 * remove `adjust` from data. Returns 0 or a negative value (err set).
 */
int fmf_adjust(struct json_object *data, const struct json_object *context, unsigned flags,
               char *err, size_t errlen);

/*
 * Parse the YAML text of one .fmf file (len bytes; name is used in error
 * messages only) into json. The top level must be a mapping, or empty (then
 * *out is set to NULL and 0 returned). On success *out holds a new
 * reference the caller puts. Negative on error (err set, *out untouched).
 */
int fmf_parse_buffer(const char *data, size_t len, const char *name, struct json_object **out,
                     char *err, size_t errlen);

/*
 * A test's `duration` as tmt evaluates it (tmt.utils.duration_to_seconds
 * with tmt's default injected). value is the node's value of the key, NULL
 * when it has none (FMF_DEFAULT_DURATION); a number reads as its digits
 * (YAML 90), other types are refused.
 *
 * The text is terms with optional whitespace between them and none before
 * the first. A term is an amount (an optional '+' as sleep's arguments
 * have, digits, optional whitespace, an optional unit s, m, h or d: "90",
 * "5m", "1 h", "+5m") or a factor ('*', optional
 * whitespace, digits with an optional fraction: "*2", "*1.5"). A term is
 * followed by whitespace, '*' or the end, or by a digit after a unit
 * ("1h30m"). The amounts are added; the sum (FMF_DEFAULT_DURATION if it is
 * 0) is multiplied by each factor in turn, in double precision, and rounded
 * up: "1m*2.5" is 150, "5m +5m", "5m 5m" and "5m5m" 600, "*2" 600, "1s *3.3"
 * 4. Refused: anything else ("5m -5m", "1.5m", "*2m", "5 x", "", " 5m"),
 * ASCII digits only (Python's \d would take others), a product of 0 or
 * past FMF_MAX_DURATION. Whitespace is what Python's \s takes (Unicode
 * spaces in UTF-8 too).
 *
 * Returns 0 with the seconds in *seconds, or -EINVAL with the reason in err
 * (*seconds untouched).
 */
int fmf_duration(const struct json_object *value, int64_t *seconds, char *err, size_t errlen);

#endif

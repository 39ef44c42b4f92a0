/*
 * ssh provisioner: connecting (host key check, login) and running one
 * command to its end on a session.
 */
#define _GNU_SOURCE 1
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* "127.0.0.1:2201", "[::1]:22" */
static void where(const host *h, char *buf, size_t len)
{
    if (strchr(h->address, ':'))
        snprintf(buf, len, "[%s]:%u", h->address, h->port);
    else
        snprintf(buf, len, "%s:%u", h->address, h->port);
}

static void set_timeout(ssh_session s, int64_t ns)
{
    long secs = (long)(ns / ATX_NSEC_PER_SEC);
    long usec = (long)(ns % ATX_NSEC_PER_SEC / 1000);

    if (secs == 0 && usec == 0)
        usec = 1000;
    ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &secs);
    ssh_options_set(s, SSH_OPTIONS_TIMEOUT_USEC, &usec);
}

/* "ssh-ed25519 key SHA256:..." of the server's key, or a placeholder. */
static void fingerprint(ssh_session s, char *buf, size_t len)
{
    ssh_key key = NULL;
    unsigned char *hash = NULL;
    size_t hlen = 0;
    char *fp = NULL;

    snprintf(buf, len, "host key (fingerprint unavailable)");
    if (ssh_get_server_publickey(s, &key) != SSH_OK)
        return;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0 &&
        (fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen)))
        snprintf(buf, len, "%s host key %s", ssh_key_type_to_char(ssh_key_type(key)), fp);
    ssh_string_free_char(fp);
    ssh_clean_pubkey_hash(&hash);
    ssh_key_free(key);
}

/* Check the server's key against known_hosts. 0, or the refusal. */
static int verify_host_key(ssh_prov *p, host *h, ssh_session s, const char *at)
{
    char fp[256];

    if (p->insecure)
        return 0;
    enum ssh_known_hosts_e st = ssh_session_is_known_server(s);
    if (st == SSH_KNOWN_HOSTS_OK)
        return 0;
    fingerprint(s, fp, sizeof(fp));
    switch (st) {
    case SSH_KNOWN_HOSTS_CHANGED:
        return atx_error_set(ATX_EINFRA, "ssh: host %s (%s) presents a changed %s, not the "
                             "one %s holds; refusing it", h->name, at, fp, p->known_hosts);
    case SSH_KNOWN_HOSTS_OTHER:
        return atx_error_set(ATX_EINFRA, "ssh: host %s (%s) presents an %s of another type "
                             "than %s holds for it; refusing it", h->name, at, fp,
                             p->known_hosts);
    case SSH_KNOWN_HOSTS_UNKNOWN:
    case SSH_KNOWN_HOSTS_NOT_FOUND:
        return atx_error_set(ATX_EINFRA, "ssh: host %s (%s) presents an unknown %s; refusing "
                             "it (add it to %s)", h->name, at, fp, p->known_hosts);
    default:
        return atx_error_set(ATX_EINFRA, "ssh: host %s (%s) presents %s, which cannot be "
                             "checked against %s: %s; refusing it", h->name, at, fp,
                             p->known_hosts, ssh_get_error(s));
    }
}

static int login(host *h, ssh_session s, const char *at)
{
    int rc;

    if (h->identity) {
        ssh_key key = NULL;
        if (ssh_pki_import_privkey_file(h->identity, NULL, NULL, NULL, &key) != SSH_OK)
            return atx_error_set(ATX_EINFRA, "ssh: host %s: cannot read the identity file %s "
                                 "(a key without a passphrase; use ssh-agent otherwise)",
                                 h->name, h->identity);
        rc = ssh_userauth_publickey(s, NULL, key);
        ssh_key_free(key);
    } else {
        rc = ssh_userauth_publickey_auto(s, NULL, NULL);
    }
    if (rc == SSH_AUTH_SUCCESS)
        return 0;
    const char *user = NULL;
    char *u = NULL;
    if (ssh_options_get(s, SSH_OPTIONS_USER, &u) == SSH_OK)
        user = u;
    rc = atx_error_set(ATX_EINFRA, "ssh: host %s (%s) refused the login of %s with %s%s: %s",
                       h->name, at, user ? user : "?",
                       h->identity ? "the key " : "ssh-agent and the default keys",
                       h->identity ? h->identity : "", ssh_get_error(s));
    ssh_string_free_char(u);
    return rc;
}

int sshp_connect(ssh_prov *p, host *h, int64_t timeout_ns, ssh_session *out, bool *refused)
{
    char at[300];
    bool no = false;
    int zero = 0, one = 1, r;
    ssh_session s;

    *refused = false;
    where(h, at, sizeof(at));
    if (!(s = ssh_new()))
        return atx_error_set(ATX_ENOMEM, "out of memory");
    /* A pool file says everything: ~/.ssh/config is not read, so that it
     * cannot change the host, port, user or keys under the pool's feet. */
    if (ssh_options_set(s, SSH_OPTIONS_HOST, h->address) < 0 ||
        ssh_options_set(s, SSH_OPTIONS_PORT, &h->port) < 0 ||
        (h->user && ssh_options_set(s, SSH_OPTIONS_USER, h->user) < 0) ||
        ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no) < 0 ||
        ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &zero) < 0 ||
        ssh_options_set(s, SSH_OPTIONS_NODELAY, &one) < 0 ||
        ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, p->known_hosts) < 0) {
        r = atx_error_set(ATX_EINFRA, "ssh: host %s: bad options: %s", h->name, ssh_get_error(s));
        ssh_free(s);
        return r;
    }
    set_timeout(s, timeout_ns);
    if (ssh_connect(s) != SSH_OK) {
        r = atx_error_set(ATX_EINFRA, "ssh: cannot connect to host %s (%s): %s", h->name, at,
                          ssh_get_error(s));
        ssh_free(s);
        return r;
    }
    /* TCP keepalives too: a peer that vanished is noticed by the kernel. */
    int fd = ssh_get_fd(s), on = 1;
    if (fd >= 0 && p->keepalive_ns) {
        int idle = (int)(p->keepalive_ns / ATX_NSEC_PER_SEC), intvl = idle > 3 ? idle / 3 : 1,
            cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
    if ((r = verify_host_key(p, h, s, at)) < 0) {
        *refused = true;
        sshp_disconnect(s);
        return r;
    }
    if ((r = login(h, s, at)) < 0) {
        sshp_disconnect(s);
        return r;
    }
    *out = s;
    return 0;
}

void sshp_disconnect(ssh_session s)
{
    if (!s)
        return;
    if (ssh_is_connected(s))
        ssh_disconnect(s);
    ssh_free(s);
}

int sshp_quote(char *buf, size_t len, size_t *pos, const char *s)
{
    size_t n = *pos;

#define PUT(c) do { if (n + 1 >= len) return -1; buf[n++] = (c); } while (0)
    PUT('\'');
    for (; *s; s++) {
        if (*s == '\'') {
            PUT('\'');
            PUT('\\');
            PUT('\'');
            PUT('\'');
        } else {
            PUT(*s);
        }
    }
    PUT('\'');
#undef PUT
    buf[n] = '\0';
    *pos = n;
    return 0;
}

static bool closed(ssh_session s)
{
    return !ssh_is_connected(s) || (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) ||
           ssh_get_fd(s) < 0;
}

int sshp_wait_closed(ssh_session s, int64_t until, int cancel_fd)
{
    ssh_event ev = ssh_event_new();
    int r = ATX_ETIMEDOUT;

    if (!ev || ssh_event_add_session(ev, s) != SSH_OK) {
        if (ev)
            ssh_event_free(ev);
        return atx_error_set(ATX_EINFRA, "ssh: cannot watch a session");
    }
    for (int64_t next_ping = 0;;) {
        int64_t now = atx_now_ns();
        if (closed(s)) {
            r = 0;
            break;
        }
        if (now >= until)
            break;
        if (now >= next_ping) {
            if (ssh_send_ignore(s, "") != SSH_OK && closed(s)) {
                r = 0;
                break;
            }
            next_ping = now + ATX_NSEC_PER_SEC;
        }
        struct pollfd c = { .fd = cancel_fd, .events = POLLIN };
        if (cancel_fd >= 0 && poll(&c, 1, 0) > 0) {
            r = ATX_ECANCELLED;
            break;
        }
        int64_t left = until - now;
        /* Packets that come are taken in (an EOF closes the session). */
        if (ssh_event_dopoll(ev, left > 200 * ATX_NSEC_PER_MSEC ? 200 : (int)(left / ATX_NSEC_PER_MSEC + 1)) == SSH_ERROR && closed(s)) {
            r = 0;
            break;
        }
    }
    ssh_event_remove_session(ev, s);
    ssh_event_free(ev);
    if (r == ATX_ECANCELLED)
        return atx_error_set(r, "the run was stopped");
    return r;
}

static int broke(ssh_session s, const char *name, const char *what)
{
    if (!ssh_is_connected(s) || (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)))
        return atx_error_set(ATX_ELOST, "ssh: the connection to %s broke: %s", name,
                             ssh_get_error(s));
    return atx_error_set(ATX_EINFRA, "ssh: %s on %s failed: %s", what, name, ssh_get_error(s));
}

int sshp_run(ssh_session s, const char *name, const char *cmd, int64_t timeout_ns, char *out,
             size_t outlen, int *code)
{
    int64_t until = atx_now_ns() + timeout_ns;
    ssh_channel ch = ssh_channel_new(s);
    size_t got = 0;
    char buf[4096];
    int r = 0;

    if (out && outlen)
        out[0] = '\0';
    if (!ch)
        return broke(s, name, "opening a channel");
    if (ssh_channel_open_session(ch) != SSH_OK) {
        r = broke(s, name, "opening a channel");
        ssh_channel_free(ch);
        return r;
    }
    if (ssh_channel_request_exec(ch, cmd) != SSH_OK) {
        r = broke(s, name, "starting a command");
        goto out;
    }
    ssh_channel_send_eof(ch);
    for (;;) {
        int64_t left = until - atx_now_ns();
        if (left <= 0) {
            r = atx_error_set(ATX_ETIMEDOUT, "ssh: a command on %s did not end in time", name);
            goto out;
        }
        int ms = left > ATX_NSEC_PER_SEC ? 1000 : (int)(left / ATX_NSEC_PER_MSEC + 1);
        int k = ssh_channel_read_timeout(ch, buf, sizeof(buf), 0, ms);
        if (k > 0) {
            if (out && got + 1 < outlen) {
                size_t n = (size_t)k < outlen - 1 - got ? (size_t)k : outlen - 1 - got;
                memcpy(out + got, buf, n);
                got += n;
                out[got] = '\0';
            }
            continue;
        }
        if (k < 0) {
            r = broke(s, name, "reading a command's output");
            goto out;
        }
        while (ssh_channel_read_nonblocking(ch, buf, sizeof(buf), 1) > 0)
            ;
        if (ssh_channel_is_eof(ch))
            break;
    }
    *code = ssh_channel_get_exit_status(ch);
    if (*code < 0 && !ssh_is_connected(s))
        r = broke(s, name, "waiting for a command");
out:
    ssh_channel_close(ch);
    ssh_channel_free(ch);
    return r;
}

/* Wait for @p events on @p fd until @p until, looking at @p stop every 100 ms. */
static int wait_fd(int fd, short events, int64_t until, bool (*stop)(void *), void *ud)
{
    for (;;) {
        int64_t left = until - atx_now_ns();
        if (left <= 0)
            return 0;
        if (stop && stop(ud))
            return -1;
        struct pollfd pfd = { .fd = fd, .events = events };
        int ms = left > 100 * ATX_NSEC_PER_MSEC ? 100 : (int)(left / ATX_NSEC_PER_MSEC + 1);
        int n = poll(&pfd, 1, ms);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
}

int sshp_reachable(const host *h, int64_t timeout_ns, bool (*stop)(void *), void *ud)
{
    char at[300], port[16], banner[8] = "";
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
    int64_t until = atx_now_ns() + timeout_ns;
    int r = 0, fd = -1;

    where(h, at, sizeof(at));
    snprintf(port, sizeof(port), "%u", h->port);
    if (getaddrinfo(h->address, port, &hints, &ai) != 0 || !ai)
        return atx_error_set(ATX_EINFRA, "ssh: cannot resolve host %s (%s)", h->name, at);
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
        r = atx_error_set(ATX_EINFRA, "ssh: cannot connect to host %s (%s): %s", h->name, at,
                          strerror(errno));
        goto out;
    }
    int w = wait_fd(fd, POLLOUT, until, stop, ud), err = 0;
    socklen_t elen = sizeof(err);
    if (w > 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err)) {
        r = atx_error_set(ATX_EINFRA, "ssh: cannot connect to host %s (%s): %s", h->name, at,
                          strerror(err ? err : errno));
        goto out;
    }
    /* sshd speaks first: "SSH-2.0-..." */
    if (w > 0 && (w = wait_fd(fd, POLLIN, until, stop, ud)) > 0 &&
        recv(fd, banner, 4, MSG_PEEK) == 4 && memcmp(banner, "SSH-", 4) == 0)
        goto out;
    if (w < 0)
        r = atx_error_set(ATX_ECANCELLED, "ssh: stopped");
    else if (w == 0)
        r = atx_error_set(ATX_EINFRA, "ssh: host %s (%s) did not answer within %llds", h->name,
                          at, (long long)(timeout_ns / ATX_NSEC_PER_SEC));
    else
        r = atx_error_set(ATX_EINFRA, "ssh: host %s (%s) does not speak SSH", h->name, at);
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return r;
}

// Switchboard browser client 0.1.0 (ES module, no dependencies). Served at /client.js.

/** An error answered by the server: `code` is the problem+json stable code. */
export class SwitchboardError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || 'HTTP ' + status);
    this.name = 'SwitchboardError';
    this.status = status;
    this.code = (problem && problem.code) || (status ? 'HTTP_' + status : 'NETWORK_ERROR');
    this.problem = problem || null;
  }
}

const FRAMES = ['ready', 'snapshot', 'synced', 'record', 'delete', 'event', 'presence', 'listen', 'denied', 'reset'];

/**
 * Connects to a Switchboard server. `opts.token` is a bearer token, or a
 * function returning one (called for every request and reconnect, so that
 * a refreshed token is used). With `opts.cookie` the stream uses the
 * sb_token cookie, and since the cookie never authorises a write, the
 * client trades it (POST /auth/refresh) for a bearer token kept in memory
 * only, refreshed before it expires; without a valid cookie it starts
 * anonymous until login().
 */
export async function switchboard(url, opts = {}) {
  const c = new Client(url, opts);
  if (c.cookie) await c._fetch('POST', '/auth/refresh').then((r) => c._gotToken(r), () => {});
  return c;
}

class Client {
  constructor(url, opts) {
    this.url = String(url || '').replace(/\/+$/, '');
    this.token = opts.token || null;
    this.cookie = !!opts.cookie;
    this.backoff = { min: opts.minBackoff || 250, max: opts.maxBackoff || 10000 };
    this._subs = new Map(); // key -> {sub, cbs:Set, last:{version,data}|null}
    this._es = null;
    this._stream = null; // id from the ready frame
    this._lastId = '';
    this._seenEvents = new Set();
    this._seenOrder = [];
    this._attempt = 0;
    this._timer = null;
    this._closed = false;
    this._opening = false;
    this.records = new Map();
    this.event = {
      emit: (name, data) => this._fetch('POST', '/events/' + enc(name), data).then((r) => r && r.id),
      subscribe: (pattern, cb) => this._subscribe({ event: pattern }, cb),
    };
    this.presence = {
      /** cb(user, online) for every user online now, then for every join and leave. */
      subscribe: (userOrCb, cb) => typeof userOrCb === 'function'
        ? this._subscribe({ presence: '*' }, userOrCb)
        : this._subscribe({ presence: userOrCb }, cb),
      /** The users online now (optionally only among users). */
      get: (users = []) => this._fetch('GET', '/presence' + (users.length ? '?' + users.map((u) => 'user=' + encodeURIComponent(u)).join('&') : '')).then((r) => r.users),
    };
    this.rpc = {
      make: (name, data, o = {}) => {
        const q = o.timeout ? '?timeout=' + Math.ceil(o.timeout) + 'ms' : '';
        return this._fetch('POST', '/rpc/' + enc(name) + q, data === undefined ? null : data).then((r) => r.data);
      },
      /**
       * Serves the RPCs names (a name or a list): handler(data, {name, id,
       * requester}) returns (or resolves to) the answer; a throw answers the
       * error. Returns the function that stops providing.
       */
      provide: (names, handler) => {
        const stop = new AbortController();
        const q = '/rpc-requests?' + [].concat(names).map((n) => 'name=' + encodeURIComponent(n)).join('&') + '&wait=30s';
        const loop = async () => {
          let attempt = 0;
          while (!stop.signal.aborted) {
            let r;
            try {
              r = await this._fetch('GET', q, undefined, {}, stop.signal);
              attempt = 0;
            } catch (e) {
              if (stop.signal.aborted) return;
              await new Promise((ok) => setTimeout(ok, Math.min(this.backoff.max, this.backoff.min * 2 ** attempt++)));
              continue;
            }
            for (const req of (r && r.requests) || []) {
              let answer;
              try {
                answer = { data: await handler(req.data, { name: req.name, id: req.id, requester: req.requester }) };
              } catch (e) {
                answer = { error: String((e && e.message) || e) };
              }
              if ('data' in answer && answer.data === undefined) answer.data = null;
              this._fetch('POST', '/rpc-requests/' + encodeURIComponent(req.id), answer).catch(() => {});
            }
          }
        };
        loop();
        return () => stop.abort();
      },
    };
  }

  /** The record called name (one object per name). */
  record(name) {
    let r = this.records.get(name);
    if (!r) this.records.set(name, (r = new RecordHandle(this, name)));
    return r;
  }

  /**
   * A live collection: collection('driver/*').subscribe({snapshot, change,
   * delete, synced}); each handler optional.
   */
  collection(pattern) {
    return { subscribe: (h) => this._subscribe({ record: pattern }, h) };
  }

  /** listen('prices/*', (name, active, kind) => ...): demand for names under a prefix (for data providers). */
  listen(pattern, cb) {
    return this._subscribe({ listen: pattern }, cb);
  }

  /**
   * Logs in with creds (POST /auth/login; with opts.cookie the server sets
   * the cookie) and keeps the token refreshed before it expires. Resolves
   * to {id, clientData, expiresAt}; the stream reopens as the new user.
   */
  async login(creds) {
    const r = await this._fetch('POST', '/auth/login' + (this.cookie ? '?cookie=true' : ''), creds);
    this._gotToken(r);
    this._reopen();
    return { id: r.id, clientData: r.clientData, expiresAt: r.expiresAt };
  }

  /** Revokes the token (and the cookie) and goes on anonymously. */
  async logout() {
    clearTimeout(this._refresh);
    try {
      await this._fetch('POST', '/auth/logout');
    } finally {
      if (typeof this.token !== 'function') this.token = null;
      this._reopen();
    }
  }

  // _gotToken keeps a login's or refresh's token (in memory only) and
  // refreshes it (with the cookie too in cookie mode) before it expires,
  // trying again while a refresh fails for another reason than a 401. The
  // cookie's Max-Age is whole seconds, rounded down: it may end up to a
  // second before the token, hence the margin.
  _gotToken(r) {
    if (typeof this.token !== 'function') this.token = r.token;
    clearTimeout(this._refresh);
    const left = Date.parse(r.expiresAt) - Date.now();
    if (!(left > 0)) return;
    this._refresh = setTimeout(() => {
      this._fetch('POST', '/auth/refresh').then((n) => this._gotToken(n), (e) => e.status !== 401 && this._gotToken(r));
    }, Math.max(500, Math.min(left * 0.75, left - 1500)));
  }

  // _reopen starts a new stream (of another identity) with every subscription.
  _reopen() {
    if (this._es) this._es.close();
    this._es = null;
    this._stream = null;
    this._lastId = '';
    clearTimeout(this._timer);
    this._timer = null;
    if (this._subs.size && !this._opening) this._open();
  }

  /** Closes the stream; the client is unusable afterwards. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    clearTimeout(this._refresh);
    if (this._es) this._es.close();
    this._es = null;
  }

  // _token is opts.token, or what the function given as opts.token returns
  // (called for every request and every reconnect, so it may refresh).
  async _token() {
    return typeof this.token === 'function' ? await this.token() : this.token;
  }

  async _fetch(method, path, body, headers = {}, signal) {
    const h = Object.assign({}, headers);
    // In cookie mode a refresh goes by cookie, which it renews too.
    const token = this.cookie && path === '/auth/refresh' ? null : await this._token();
    if (token) h.Authorization = 'Bearer ' + token;
    const init = { method, headers: h, credentials: this.cookie ? 'include' : 'same-origin', signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      if (!h['Content-Type']) h['Content-Type'] = 'application/json';
    }
    let res;
    try {
      res = await fetch(this.url + path, init);
    } catch (e) {
      const err = new SwitchboardError(0, { detail: String(e && e.message), code: 'NETWORK_ERROR' });
      throw err;
    }
    const text = await res.text();
    let json = null;
    if (text) {
      try { json = JSON.parse(text); } catch (e) { json = null; }
    }
    if (!res.ok) throw new SwitchboardError(res.status, json);
    return json;
  }

  // _subscribe adds cb to the stream subscription sub and returns its remover.
  _subscribe(sub, cb) {
    if (typeof cb !== 'function' && !(cb && typeof cb === 'object')) throw new TypeError('subscribe needs a callback');
    const key = subKey(sub);
    let s = this._subs.get(key);
    const fresh = !s;
    if (fresh) this._subs.set(key, (s = { sub, cbs: new Set(), last: null, onServer: false, seen: new Map(), vals: new Map() }));
    s.cbs.add(cb);
    if (!fresh && s.last && typeof cb === 'function') {
      const last = s.last;
      queueMicrotask(() => s.cbs.has(cb) && call(cb, last.data, last.meta));
    }
    if (!fresh && sub.presence) for (const [u, on] of s.seen) if (on || sub.presence !== '*') queueMicrotask(() => s.cbs.has(cb) && call(cb, u, on));
    if (!fresh && (s.vals.size || s.synced)) queueMicrotask(() => { // a collection's state now
      if (!s.cbs.has(cb)) return;
      for (const [n, [d, v]] of s.vals) if (cb.snapshot) call(cb.snapshot.bind(cb), n, d, { name: n, version: v, op: 'snapshot' });
      if (s.synced && cb.synced) call(cb.synced.bind(cb), s.vals.size, { record: sub.record, count: s.vals.size });
    });
    if (fresh) this._connect(s);
    return () => {
      if (!s.cbs.delete(cb) || s.cbs.size || this._subs.get(key) !== s) return;
      this._subs.delete(key);
      if (s.onServer && this._stream) {
        this._fetch('DELETE', '/stream/' + enc(this._stream) + '/subscriptions', s.sub).catch(() => {});
      }
      if (!this._subs.size) this.close(), (this._closed = false);
    };
  }

  // _connect brings a new subscription to the stream: in the URL of the
  // first EventSource, else with POST /stream/{id}/subscriptions.
  _connect(s) {
    if (this._closed) return;
    if (!this._es && !this._timer && !this._opening) return this._open();
    if (this._stream && this._es && this._es.readyState === 1) this._add(s);
    // else: the ready frame (or the reopen) brings it.
  }

  _add(s) {
    s.onServer = true;
    this._fetch('POST', '/stream/' + enc(this._stream) + '/subscriptions', s.sub).catch((err) => {
      s.onServer = false;
      for (const cb of s.cbs) if (cb.onError) cb.onError(err);
    });
  }

  _open() {
    this._timer = null;
    if (this._closed || !this._subs.size) return;
    this._opening = true;
    this._token().then((token) => {
      this._opening = false;
      this._start(token);
    }, () => {
      this._opening = false;
      this._retry();
    });
  }

  // _retry opens a new EventSource after a backoff.
  _retry() {
    const base = Math.min(this.backoff.max, this.backoff.min * 2 ** this._attempt++);
    this._timer = setTimeout(() => this._open(), base / 2 + Math.random() * base / 2);
  }

  _start(token) {
    if (this._closed || !this._subs.size) return;
    const q = new URLSearchParams();
    for (const s of this._subs.values()) {
      if (s.sub.path) continue; // path subscriptions need a POST
      for (const k of ['record', 'event', 'presence', 'listen']) if (s.sub[k]) q.append(k, s.sub[k]);
      s.onServer = true;
    }
    if (this._lastId) q.set('lastEventId', this._lastId);
    if (token && !this.cookie) q.set('access_token', token); // else the cookie, renewed by refreshes
    const es = new EventSource(this.url + '/stream?' + q, { withCredentials: this.cookie });
    this._es = es;
    es.onopen = () => { this._attempt = 0; };
    es.onerror = () => {
      if (es !== this._es || es.readyState !== 2) return; // the browser reconnects by itself
      this._es = null;
      this._stream = null;
      this._retry();
    };
    for (const t of FRAMES) es.addEventListener(t, (e) => es === this._es && this._frame(t, e));
  }

  _frame(type, e) {
    let d;
    try { d = JSON.parse(e.data); } catch (err) { return; }
    if (e.lastEventId) this._lastId = e.lastEventId;
    switch (type) {
      case 'ready': {
        this._stream = d.stream;
        const have = new Set((d.subscriptions || []).map(subKey));
        for (const x of d.subscriptions || []) {
          if (!this._subs.has(subKey(x))) this._fetch('DELETE', '/stream/' + enc(d.stream) + '/subscriptions', x).catch(() => {});
        }
        for (const s of this._subs.values()) {
          if (have.has(subKey(s.sub))) s.onServer = true;
          else this._add(s);
        }
        break;
      }
      case 'snapshot':
      case 'record':
      case 'delete': {
        if (!d.path) this._collections(type, d);
        const s = this._subs.get(subKey({ record: d.name, path: d.path }));
        if (!s) return;
        if (s.last && d.version <= s.last.version) return; // seen already
        if (type === 'snapshot' && d.version === 0 && !s.last) {
          s.last = { version: 0, data: null, meta: { name: d.name, version: 0, op: 'snapshot' } };
          return;
        }
        const data = type === 'delete' ? null : d.data;
        const meta = { name: d.name, version: d.version, op: type === 'delete' ? 'delete' : d.op || 'snapshot' };
        s.last = { version: d.version, data, meta };
        const r = this.records.get(d.name);
        if (r && d.version > r.version) r.version = d.version;
        for (const cb of [...s.cbs]) call(cb, data, meta);
        break;
      }
      case 'event': {
        if (this._seenEvents.has(d.id)) return;
        this._seenEvents.add(d.id);
        this._seenOrder.push(d.id);
        if (this._seenOrder.length > 10000) this._seenEvents.delete(this._seenOrder.shift());
        for (const s of this._subs.values()) {
          if (s.sub.event && matches(s.sub.event, d.name)) {
            for (const cb of [...s.cbs]) call(cb, d.data, { name: d.name, publisher: d.publisher, id: d.id });
          }
        }
        break;
      }
      case 'synced': {
        const s = this._subs.get(subKey({ record: d.record }));
        if (s) s.synced = 1, [...s.cbs].forEach((h) => h.synced && call(h.synced.bind(h), d.count, d));
        break;
      }
      case 'presence':
        // A frame does not say which subscription it is for: each is told
        // a user's changes of state only (presence=* no unknown user offline).
        for (const s of this._subs.values()) {
          const p = s.sub.presence;
          if (!(p === '*' || p === d.user) || s.seen.get(d.user) === d.online || (p === '*' && !d.online && !s.seen.has(d.user))) continue;
          s.seen.set(d.user, d.online);
          for (const cb of [...s.cbs]) call(cb, d.user, d.online);
        }
        break;
      case 'listen':
        for (const s of this._subs.values()) {
          if (s.sub.listen && matches(s.sub.listen, d.name)) for (const cb of [...s.cbs]) call(cb, d.name, d.active, d.kind);
        }
        break;
      case 'denied': {
        const err = new SwitchboardError(403, { code: d.code, detail: 'subscription refused' });
        for (const s of this._subs.values()) {
          if (subKey(s.sub) === subKey(d.subscription || {})) for (const cb of s.cbs) if (cb.onError) cb.onError(err);
        }
        break;
      }
      case 'reset':
        for (const s of this._subs.values()) if (!s.sub.presence) s.last = null, s.seen.clear(), s.vals.clear(), (s.synced = 0); // fresh snapshots follow
        break;
    }
  }
}

// _collections hands a record frame to the live collections it is under,
// once per version of each record.
Client.prototype._collections = function (type, d) {
  for (const s of this._subs.values()) {
    const p = s.sub.record;
    if (!p || s.sub.path || !(p === '*' || p.endsWith('/*')) || !matches(p, d.name)) continue;
    if (d.version <= (s.seen.get(d.name) || 0)) continue;
    s.seen.set(d.name, d.version);
    if (type === 'delete') s.vals.delete(d.name);
    else s.vals.set(d.name, [d.data, d.version]);
    const kind = type === 'record' ? 'change' : type;
    const data = type === 'delete' ? null : d.data;
    for (const h of [...s.cbs]) if (h[kind]) call(h[kind].bind(h), d.name, data, { name: d.name, version: d.version, op: d.op || type });
  }
};

class RecordHandle {
  constructor(client, name) {
    this.client = client;
    this.name = name;
    /** The last version this client saw (0: none yet). */
    this.version = 0;
  }
  _path(p) { return '/records/' + enc(this.name) + (p === undefined ? '' : '?path=' + encodeURIComponent(p)); }
  _seen(r) {
    if (r && r.version > this.version) this.version = r.version;
    return r;
  }
  /** The value (or the value at path); null when the record does not exist. */
  async get(path) {
    try {
      const r = this._seen(await this.client._fetch('GET', this._path(path)));
      return r.data;
    } catch (e) {
      if (e.code === 'NOT_FOUND') return null;
      throw e;
    }
  }
  /** set(value) replaces the record; set(path, value) sets one path. Resolves to the new version. */
  async set(pathOrValue, value) {
    const r = arguments.length >= 2
      ? await this.client._fetch('PUT', this._path(pathOrValue), value)
      : await this.client._fetch('PUT', this._path(), pathOrValue);
    return this._seen(r).version;
  }
  /** Applies an RFC 7396 merge patch. Resolves to the new version. */
  async patch(mergePatch) {
    const r = await this.client._fetch('PATCH', this._path(), mergePatch, { 'Content-Type': 'application/merge-patch+json' });
    return this._seen(r).version;
  }
  /**
   * A conditional write of the whole value at the version this client saw
   * last (r.version; create-only when 0). On a conflict it refetches and
   * calls onConflict(remote, local): the value it returns is written at the
   * new version (undefined gives up), at most `retries` times (default 3);
   * then the VERSION_CONFLICT error is thrown. Resolves to the new version.
   */
  async update(value, { onConflict, retries = 3 } = {}) {
    for (let i = 0; ; i++) {
      const cond = this.version ? { 'If-Match': '"' + this.version + '"' } : { 'If-None-Match': '*' };
      try {
        return this._seen(await this.client._fetch('PUT', this._path(), value, cond)).version;
      } catch (e) {
        if (e.code !== 'VERSION_CONFLICT' || !onConflict || i >= retries) throw e;
        let remote = null;
        try {
          const r = await this.client._fetch('GET', this._path());
          this.version = r.version;
          remote = r.data;
        } catch (g) {
          if (g.code !== 'NOT_FOUND') throw g;
          this.version = 0;
        }
        value = await onConflict(remote, value);
        if (value === undefined) throw e;
      }
    }
  }

  /** Deletes the record. */
  async delete() {
    await this.client._fetch('DELETE', this._path());
  }
  /** subscribe(cb) or subscribe(path, cb): cb(data, {name, version, op}); returns the unsubscribe function. */
  subscribe(pathOrCb, cb) {
    if (typeof pathOrCb === 'function') return this.client._subscribe({ record: this.name }, pathOrCb);
    return this.client._subscribe({ record: this.name, path: pathOrCb }, cb);
  }
}

function subKey(s) {
  if (s.record) return 'r\0' + s.record + '\0' + (s.path || '');
  if (s.event) return 'e\0' + s.event;
  if (s.presence) return 'p\0' + s.presence;
  if (s.listen) return 'l\0' + s.listen;
  return '?';
}

function matches(pattern, name) {
  if (pattern === '*') return true;
  if (pattern.endsWith('/*')) return name.startsWith(pattern.slice(0, -1));
  return pattern === name;
}

function enc(name) {
  return String(name).split('/').map(encodeURIComponent).join('/');
}

function call(cb, ...args) {
  try { cb(...args); } catch (e) { setTimeout(() => { throw e; }); }
}

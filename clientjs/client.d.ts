// Switchboard browser client 0.1.0: type declarations for /client.js.

/** An error answered by the server; `code` is the problem+json stable code. */
export class SwitchboardError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: { type?: string; title?: string; status?: number; detail?: string; code?: string; [k: string]: unknown } | null;
}

export interface Options {
  /**
   * A bearer token, sent as Authorization and as ?access_token= on the
   * stream; or a function returning one, called for every request and every
   * reconnect (a stream ended by the token's expiry reopens with the new one).
   */
  token?: string | (() => string | Promise<string>);
  /**
   * Use the sb_token cookie for the stream. The cookie never authorises a
   * write, so switchboard() trades it (POST /auth/refresh) for a bearer
   * token kept in memory only and refreshed, with the cookie, before it
   * expires; without a valid cookie the client is anonymous until login().
   */
  cookie?: boolean;
  /** Reconnect backoff bounds in milliseconds (defaults 250 and 10000). */
  minBackoff?: number;
  maxBackoff?: number;
}

export interface RecordMeta {
  name: string;
  version: number;
  op: 'snapshot' | 'set' | 'patch' | 'delete';
}

export interface EventMeta {
  name: string;
  publisher: string | null;
  id: string;
}

export type Unsubscribe = () => void;

export interface RecordHandle<T = unknown> {
  readonly name: string;
  /** The last version this client saw (0: none yet). */
  readonly version: number;
  /** The value, or the value at path; null when the record does not exist. */
  get(path?: string): Promise<T | null>;
  /** Replaces the whole value; resolves to the new version. */
  set(value: T): Promise<number>;
  /** Sets the value at a dot path or JSON Pointer; resolves to the new version. */
  set(path: string, value: unknown): Promise<number>;
  /** Applies an RFC 7396 merge patch; resolves to the new version. */
  patch(mergePatch: unknown): Promise<number>;
  /**
   * Writes value at the version last seen (create-only at 0); on 412 calls
   * onConflict(remote, local) and writes what it returns (undefined: give
   * up), at most retries times (default 3). Resolves to the new version.
   */
  update(value: T, opts?: { onConflict?: (remote: T | null, local: T) => T | undefined | Promise<T | undefined>; retries?: number }): Promise<number>;
  delete(): Promise<void>;
  /** Calls cb with the current value, then with every change (data null on delete). */
  subscribe(cb: (data: T | null, meta: RecordMeta) => void): Unsubscribe;
  subscribe(path: string, cb: (data: unknown, meta: RecordMeta) => void): Unsubscribe;
}

export interface CollectionHandlers {
  /** Each record under the prefix at subscription (and after a reset). */
  snapshot?(name: string, data: unknown, meta: RecordMeta): void;
  /** The snapshots are complete. */
  synced?(count: number): void;
  /** A record under the prefix changed or was created. */
  change?(name: string, data: unknown, meta: RecordMeta): void;
  /** A record under the prefix was deleted (data is null). */
  delete?(name: string, data: null, meta: RecordMeta): void;
  /** The subscription was refused or ended (code PERMISSION_DENIED or PAYLOAD_TOO_LARGE). */
  onError?(err: SwitchboardError): void;
}

export interface Client {
  record<T = unknown>(name: string): RecordHandle<T>;
  /** A live collection, `prefix/*` or `*`. */
  collection(pattern: string): { subscribe(handlers: CollectionHandlers): Unsubscribe };
  presence: {
    /**
     * cb(user, online): the users online now, then every join and leave;
     * for one user, its state now (online or not), then its changes. Each
     * change of state is told once.
     */
    subscribe(cb: (user: string, online: boolean) => void): Unsubscribe;
    subscribe(user: string, cb: (user: string, online: boolean) => void): Unsubscribe;
    /** The users online now, optionally only among users. */
    get(users?: string[]): Promise<string[]>;
  };
  /** For data providers: demand for names under a `prefix/*` starts (active) or stops. */
  listen(pattern: string, cb: (name: string, active: boolean, kind: 'record' | 'event') => void): Unsubscribe;
  event: {
    /** Publishes an event; resolves to its id. */
    emit(name: string, data: unknown): Promise<string>;
    /** Subscribes to a name, `prefix/*` or `*`. */
    subscribe(pattern: string, cb: (data: unknown, meta: EventMeta) => void): Unsubscribe;
  };
  rpc: {
    /** Calls an RPC; timeout in milliseconds (the server's default is 10 s). */
    make(name: string, data?: unknown, opts?: { timeout?: number }): Promise<unknown>;
    /** Serves RPCs by long-polling; a throw answers an error. Returns the stop function. */
    provide(names: string | string[], handler: (data: unknown, meta: { name: string; id: string; requester: string | null }) => unknown): () => void;
  };
  /** Logs in (POST /auth/login) and keeps the token refreshed; the stream reopens as the new user. */
  login(creds: unknown): Promise<{ id: string; clientData: unknown; expiresAt: string }>;
  /** Revokes the token (and clears the cookie); goes on anonymously. */
  logout(): Promise<void>;
  /** Closes the stream. */
  close(): void;
}

export function switchboard(url: string, opts?: Options): Promise<Client>;

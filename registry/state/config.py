"""``redis:`` (distribution's keys, 2.8 and 3.x) and ``state:`` (ours): where shared state lives.

distribution 2.8 wrote ``redis: {addr, password, db, dialtimeout, readtimeout, writetimeout,
pool: {maxidle, maxactive, idletimeout}, tls: {enabled}}``; 3.x takes go-redis' universal options
inline (``addrs``, ``mastername`` for Sentinel, ``username``, ``poolsize``... and ``tls:
{certificate, key, rootcas}``). Both spellings are read; a key go-redis has and redis-py cannot
honour is warned about by name. Several ``addrs`` without ``mastername`` mean a Redis Cluster.
"""

from __future__ import annotations

import dataclasses

from ..config import Section

DEFAULT_PORT = 6379


@dataclasses.dataclass
class RedisConfig:
    #: host:port of the server, of the Sentinels (with ``mastername``) or of cluster seeds
    addrs: list[str]
    mastername: str = ""
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    sentinelusername: str = ""
    sentinelpassword: str = dataclasses.field(default="", repr=False)
    db: int = 0
    clientname: str = ""
    protocol: int = 2
    dialtimeout: float = 5.0
    readtimeout: float = 3.0
    writetimeout: float = 3.0
    #: most connections per process (``poolsize``, 2.8's ``pool.maxactive``); 0: redis-py's default
    poolsize: int = 0
    pooltimeout: float = 4.0
    maxretries: int = 0
    minretrybackoff: float = 0.008
    maxretrybackoff: float = 0.512
    tls: bool = False
    certificate: str = ""
    key: str = ""
    rootcas: list[str] = dataclasses.field(default_factory=list)

    @property
    def cluster(self) -> bool:
        return len(self.addrs) > 1 and not self.mastername

    @classmethod
    def from_section(cls, s: Section) -> "RedisConfig | None":
        addrs = s.strings("addrs")
        addr = s.str("addr", "")
        if addr and addrs:
            raise s.error("redis: give either addr (distribution 2.8) or addrs (3.x), not both")
        if addr:
            addrs = [addr]
        s.secrets = s.secrets | {"password", "sentinelpassword"}
        for a in addrs:
            host, sep, port = a.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise s.error(f"{s.where('addrs' if not addr else 'addr')}: expected host:port, got {a!r}")
        pool = s.section("pool")
        maxactive = pool.int("maxactive", 0, minimum=0)
        pool.unimplemented("maxidle", "redis-py keeps every connection it opened, up to poolsize")
        pool.unimplemented("idletimeout", "redis-py does not close idle pooled connections")
        tls = s.section("tls")
        rootcas = tls.strings("rootcas")
        certificate, key = tls.str("certificate", ""), tls.str("key", "")
        if bool(certificate) != bool(key):
            raise s.error("redis.tls: certificate and key go together (mutual TLS)")
        for name, why in (
            ("minidleconns", "redis-py opens connections on demand"),
            ("maxidleconns", "redis-py keeps every connection it opened, up to poolsize"),
            ("connmaxidletime", "redis-py does not close idle pooled connections"),
            ("connmaxlifetime", "redis-py does not recycle connections by age"),
            ("poolfifo", "redis-py's pool order is fixed"),
            ("contexttimeoutenabled", "every command is bounded by readtimeout and writetimeout"),
            ("maxactiveconns", "cluster pools are sized by poolsize"),
            ("maxredirects", "redis-py follows cluster redirects with its own bound"),
            ("readonly", "replica reads are not used: leases need the primary"),
            ("routebylatency", "replica reads are not used: leases need the primary"),
            ("routerandomly", "replica reads are not used: leases need the primary"),
            ("disableidentity", "redis-py sends no CLIENT SETINFO"),
            ("identitysuffix", "redis-py sends no CLIENT SETINFO"),
            ("unstableresp3", "RESP3 is chosen with protocol: 3"),
        ):
            s.unimplemented(name, why)
        protocol = s.int("protocol", 2, minimum=2, maximum=3)
        out = cls(
            addrs=addrs,
            mastername=s.str("mastername", ""),
            username=s.str("username", ""),
            password=s.str("password", ""),
            sentinelusername=s.str("sentinelusername", ""),
            sentinelpassword=s.str("sentinelpassword", ""),
            db=s.int("db", 0, minimum=0),
            clientname=s.str("clientname", ""),
            protocol=protocol,
            dialtimeout=s.duration("dialtimeout", "5s") or 5.0,
            readtimeout=s.duration("readtimeout", "3s") or 3.0,
            writetimeout=s.duration("writetimeout", "3s") or 3.0,
            poolsize=s.int("poolsize", 0, minimum=0) or maxactive,
            pooltimeout=s.duration("pooltimeout", "4s") or 4.0,
            maxretries=s.int("maxretries", 0, minimum=-1),
            minretrybackoff=s.duration("minretrybackoff", "8ms") or 0.008,
            maxretrybackoff=s.duration("maxretrybackoff", "512ms") or 0.512,
            tls=tls.bool("enabled", False) or bool(rootcas or certificate),
            certificate=certificate,
            key=key,
            rootcas=rootcas,
        )
        if not addrs:
            if any(s.has(k) for k in ("password", "db", "mastername", "username")):
                raise s.error("redis: an address is required (redis.addr, or redis.addrs)")
            return None
        if out.cluster and out.db:
            raise s.error("redis.db: a Redis Cluster has only database 0")
        return out


@dataclasses.dataclass
class StateConfig:
    """Where shared state lives (``redis:``) and how leases behave (``state:``, ours)."""

    redis: RedisConfig | None = None
    #: seconds a lease lives without renewal: how long a crashed holder blocks others
    leasettl: float = 30.0
    #: seconds a request waits for a lease another request holds, before answering 503
    lockwait: float = 60.0
    #: local backend: the directory of lock files that workers of this host share
    lockdirectory: str = ""
    #: every Redis key starts with this (two registries on one Redis must differ here)
    keyprefix: str = "registry:"
    #: ``storage.cache.blobdescriptor``: "", "inmemory" or "redis"
    blobdescriptor: str = ""
    #: ``storage.cache.blobdescriptorsize``: entries of the in-memory cache
    blobdescriptorsize: int = 10000

    @classmethod
    def from_sections(cls, redis: Section, state: Section) -> "StateConfig":
        ttl = state.duration("leasettl", "30s")
        if ttl < 1:
            raise state.error(f"{state.where('leasettl')}: must be at least 1s")
        prefix = state.str("keyprefix", "registry:")
        if any(c.isspace() for c in prefix):
            raise state.bad("keyprefix", "a prefix without spaces", prefix)
        return cls(
            redis=RedisConfig.from_section(redis),
            leasettl=ttl,
            lockwait=state.duration("lockwait", "60s"),
            lockdirectory=state.str("lockdirectory", ""),
            keyprefix=prefix,
        )

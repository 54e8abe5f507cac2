<?php

namespace Resonance\Laravel\Sockets;

use InvalidArgumentException;

/**
 * One entry of routes/sockets.php: a WebSocket path served by Resonance whose events
 * (connect / message / close) are handled by a handler class of this app.
 */
class SocketRoute
{
    public const EVENTS = ['connect', 'message', 'close'];

    /** @var string */
    public $path;
    /** @var string */
    public $handler;
    /** @var string[] rooms joined on connect, with {param} templates */
    public $rooms = [];
    /** @var string[]|null events posted to the app (null: all) */
    public $events = null;
    /** @var int|null seconds per handler call */
    public $timeout = null;

    public function __construct(string $path, string $handler)
    {
        if ($path === '' || $path[0] !== '/') {
            throw new InvalidArgumentException("a socket route path starts with '/': \"$path\"");
        }
        if (preg_match('/[\s"]/', $path)) {
            throw new InvalidArgumentException("a socket route path has no spaces or quotes: \"$path\"");
        }
        $this->path = $path;
        $this->handler = $handler;
    }

    /** Rooms every connection joins on connect: "chat-rooms.{id}". */
    public function rooms(array $rooms): self
    {
        $this->rooms = array_values(array_map('strval', $rooms));

        return $this;
    }

    /** Only these events are posted (default: connect, message, close). */
    public function events(array $events): self
    {
        foreach ($events as $event) {
            if (! in_array($event, self::EVENTS, true)) {
                throw new InvalidArgumentException("unknown socket event \"$event\" (connect, message, close)");
            }
        }
        $this->events = array_values($events);

        return $this;
    }

    /** Seconds Resonance waits for each handler call. */
    public function timeout(int $seconds): self
    {
        $this->timeout = max(1, $seconds);

        return $this;
    }

    /** The handler URL of this route: the package's endpoint with the route in the query. */
    public function handlerUrl(string $baseUrl, string $endpointPath): string
    {
        return rtrim($baseUrl, '/').'/'.trim($endpointPath, '/').'?route='.rawurlencode($this->path);
    }

    /** The [[routes]] entry for Resonance's TOML configuration. */
    public function toToml(string $baseUrl, string $endpointPath, ?string $appId = null): string
    {
        $lines = ['[[routes]]'];
        $lines[] = 'path = '.self::tomlString($this->path);
        $lines[] = 'handler = '.self::tomlString($this->handlerUrl($baseUrl, $endpointPath));
        if ($this->rooms) {
            $lines[] = 'rooms = ['.implode(', ', array_map([self::class, 'tomlString'], $this->rooms)).']';
        }
        if ($appId !== null && $appId !== '') {
            $lines[] = 'app = '.self::tomlString($appId);
        }
        if ($this->events !== null) {
            $lines[] = 'events = ['.implode(', ', array_map([self::class, 'tomlString'], $this->events)).']';
        }
        if ($this->timeout !== null) {
            $lines[] = 'timeout = '.$this->timeout;
        }

        return implode("\n", $lines)."\n";
    }

    /** A TOML basic string. */
    public static function tomlString(string $s): string
    {
        return '"'.addcslashes($s, "\\\"\0..\37").'"';
    }
}

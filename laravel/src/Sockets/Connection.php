<?php

namespace Resonance\Laravel\Sockets;

use Closure;

/**
 * One WebSocket connection held by Resonance, as a handler call sees it. Methods that act on
 * the connection (send, join, leave, close) become actions of the handler's answer, run by
 * Resonance in order once the call returns.
 */
class Connection
{
    private $socketId;
    private $path;
    private $params;
    private $query;
    private $headers;
    private $userId;
    private $userIdSet = false;
    private $ip;
    private $userResolver;
    private $user;
    private $userResolved = false;
    private $binary = false;
    private $rooms = [];
    private $actions = [];

    public function __construct(string $socketId, string $path, array $params = [], array $query = [], array $headers = [], $userId = null, ?Closure $userResolver = null)
    {
        $this->socketId = $socketId;
        $this->path = $path;
        $this->params = $params;
        $this->query = $query;
        $this->headers = array_change_key_case($headers, CASE_LOWER);
        $this->userId = $userId;
        $this->userResolver = $userResolver;
    }

    /** The browser's IP address (X-Forwarded-For of Resonance's call), or null. */
    public function ip(): ?string
    {
        return $this->ip;
    }

    /** @internal */
    public function setIp(?string $ip): void
    {
        $this->ip = $ip === null || $ip === '' ? null : $ip;
    }

    /** The socket id (for Socket::emit() and `except:`). */
    public function id(): string
    {
        return $this->socketId;
    }

    /** The request path of the WebSocket, e.g. "/chat-rooms/7". */
    public function path(): string
    {
        return $this->path;
    }

    /** A path parameter of the route ("{id}"). */
    public function param(string $name, $default = null)
    {
        return array_key_exists($name, $this->params) ? $this->params[$name] : $default;
    }

    public function params(): array
    {
        return $this->params;
    }

    /** A query-string parameter of the WebSocket URL (connect only). */
    public function query(?string $name = null, $default = null)
    {
        if ($name === null) {
            return $this->query;
        }

        return array_key_exists($name, $this->query) ? $this->query[$name] : $default;
    }

    /** A handshake header Resonance passed on (origin, user-agent; connect only). */
    public function header(string $name, $default = null)
    {
        $name = strtolower($name);

        return array_key_exists($name, $this->headers) ? $this->headers[$name] : $default;
    }

    /**
     * The Laravel user: the app's guard applied to the cookies (session) or Authorization
     * header the browser sent on the WebSocket handshake. null for a guest.
     *
     * @return \Illuminate\Contracts\Auth\Authenticatable|null
     */
    public function user()
    {
        if (! $this->userResolved) {
            $this->userResolved = true;
            $this->user = $this->userResolver ? ($this->userResolver)() : null;
        }

        return $this->user;
    }

    /** The user id Resonance knows this connection by (from the connect answer), or null. */
    public function userId()
    {
        return $this->userId;
    }

    /**
     * Connect only: the user id Resonance files this connection under (Socket::toUser()).
     * Without it, the id of user() is used.
     */
    public function identify($userId): self
    {
        $this->userId = $userId === null ? null : (string) $userId;
        $this->userIdSet = true;

        return $this;
    }

    /** @internal */
    public function hasExplicitUserId(): bool
    {
        return $this->userIdSet;
    }

    /** Whether the message being handled was a binary frame. */
    public function isBinary(): bool
    {
        return $this->binary;
    }

    /** @internal */
    public function markBinary(bool $binary): void
    {
        $this->binary = $binary;
    }

    /** A text frame to this connection: a string as is, anything else as JSON. */
    public function send($data): self
    {
        $this->actions[] = ['send' => $data];

        return $this;
    }

    /** A binary frame to this connection. */
    public function sendBinary(string $bytes): self
    {
        $this->actions[] = ['send_binary' => base64_encode($bytes)];

        return $this;
    }

    /** Join a room (Socket::broadcast() reaches it). */
    public function join(string $room): self
    {
        $this->actions[] = ['join' => $room];
        $this->rooms[] = $room;

        return $this;
    }

    public function leave(string $room): self
    {
        $this->actions[] = ['leave' => $room];

        return $this;
    }

    /** Close the connection after what is queued. */
    public function close(int $code = 1000, string $reason = ''): self
    {
        $this->actions[] = ['close' => ['code' => $code, 'reason' => $reason]];

        return $this;
    }

    /** Rooms joined during this call (connect: answered as "rooms"). */
    public function joinedRooms(): array
    {
        return $this->rooms;
    }

    /** @internal an action in Resonance's vocabulary, run in order with the others */
    public function pushAction(array $action): void
    {
        $this->actions[] = $action;
    }

    /** @internal */
    public function actions(): array
    {
        return $this->actions;
    }
}

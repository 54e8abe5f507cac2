<?php

namespace Resonance\Laravel;

use InvalidArgumentException;
use Resonance\Laravel\Sockets\Connection;
use Resonance\Laravel\Sockets\SocketRoute;
use Resonance\Laravel\Support\ApiClient;
use Resonance\Laravel\Support\ResonanceApiException;

/**
 * The Socket facade: socket routes, and messages to sockets, rooms and users.
 *
 * Inside a handler call (onOpen / onMessage / onClose) broadcast(), toUser() and emit()
 * become actions of the handler's answer (no extra HTTP round trip; `except: $conn` is the
 * handler's own connection). Anywhere else (controllers, queued jobs, commands) they are
 * calls to Resonance's signed HTTP API.
 */
class SocketManager
{
    /** @var SocketRoute[] by path */
    private $routes = [];
    /** @var Connection[] connections whose handler call is running (innermost last) */
    private $handling = [];
    /** @var callable(): ApiClient */
    private $clientFactory;
    private $client;

    public function __construct(callable $clientFactory)
    {
        $this->clientFactory = $clientFactory;
    }

    /** Socket::route('/chat-rooms/{id}', ChatSocket::class) */
    public function route(string $path, string $handler): SocketRoute
    {
        $route = new SocketRoute($path, $handler);
        $this->routes[$path] = $route;

        return $route;
    }

    /** @return SocketRoute[] */
    public function routes(): array
    {
        return array_values($this->routes);
    }

    public function findRoute(string $path): ?SocketRoute
    {
        return $this->routes[$path] ?? null;
    }

    /** Forget every route (tests, reloading routes/sockets.php). */
    public function flushRoutes(): void
    {
        $this->routes = [];
    }

    /**
     * Send $data to every connection in $room, cluster-wide. $except: a Connection, a socket
     * id, or a list of them, left out.
     */
    public function broadcast(string $room, $data, $except = null): void
    {
        $exceptIds = [];
        foreach (is_array($except) ? $except : ($except === null ? [] : [$except]) as $e) {
            $exceptIds[] = $e instanceof Connection ? $e->id() : (string) $e;
        }
        $current = $this->current();
        if ($current !== null) {
            $others = array_values(array_diff($exceptIds, [$current->id()]));
            if (! $others) {
                $current->pushAction(['broadcast' => [
                    'room' => $room,
                    'data' => $data,
                    'except_self' => in_array($current->id(), $exceptIds, true),
                ]]);

                return;
            }
        }
        $this->client()->broadcast($room, $data, $exceptIds);
    }

    /** Send $data to every connection of user $userId on handler routes, cluster-wide. */
    public function toUser($userId, $data): void
    {
        $current = $this->current();
        if ($current !== null) {
            $current->pushAction(['to_user' => ['user_id' => (string) $userId, 'data' => $data]]);

            return;
        }
        $this->client()->toUser((string) $userId, $data);
    }

    /** Send $data to one socket, wherever it lives. */
    public function emit($socket, $data): void
    {
        $socketId = $socket instanceof Connection ? $socket->id() : (string) $socket;
        $current = $this->current();
        if ($current !== null) {
            $current->pushAction($socketId === $current->id() ? ['send' => $data] : ['to_socket' => ['socket_id' => $socketId, 'data' => $data]]);

            return;
        }
        $this->client()->socket($socketId, 'send', ['data' => $data]);
    }

    /** Put a socket in a room (from anywhere). */
    public function join($socket, string $room): void
    {
        $this->socketOp($socket, 'join', ['room' => $room], ['join' => $room]);
    }

    /** Take a socket out of a room (from anywhere). */
    public function leave($socket, string $room): void
    {
        $this->socketOp($socket, 'leave', ['room' => $room], ['leave' => $room]);
    }

    /** Close a socket (from anywhere). */
    public function close($socket, int $code = 1000, string $reason = ''): void
    {
        $this->socketOp($socket, 'close', ['code' => $code, 'reason' => $reason], ['close' => ['code' => $code, 'reason' => $reason]]);
    }

    /**
     * Run actions (Resonance's vocabulary) as if $socket's handler had answered them.
     *
     * @throws ResonanceApiException
     */
    public function actions($socket, array $actions): void
    {
        $socketId = $socket instanceof Connection ? $socket->id() : (string) $socket;
        $this->client()->socket($socketId, 'actions', ['actions' => array_values($actions)]);
    }

    /** The connection whose handler call is running, if any. */
    public function current(): ?Connection
    {
        return $this->handling ? $this->handling[count($this->handling) - 1] : null;
    }

    /**
     * @internal run $fn as the handler call of $conn
     *
     * @return mixed
     */
    public function handling(Connection $conn, callable $fn)
    {
        $this->handling[] = $conn;
        try {
            return $fn();
        } finally {
            array_pop($this->handling);
        }
    }

    /** Use $client for the API calls (tests, a custom transport). */
    public function useClient(ApiClient $client): void
    {
        $this->client = $client;
    }

    public function client(): ApiClient
    {
        if ($this->client === null) {
            $this->client = ($this->clientFactory)();
        }

        return $this->client;
    }

    private function socketOp($socket, string $op, array $body, array $action): void
    {
        $socketId = $socket instanceof Connection ? $socket->id() : (string) $socket;
        if ($socketId === '') {
            throw new InvalidArgumentException('a socket id is required');
        }
        $current = $this->current();
        if ($current !== null && $current->id() === $socketId) {
            $current->pushAction($action);

            return;
        }
        $this->client()->socket($socketId, $op, $body);
    }
}

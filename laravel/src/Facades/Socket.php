<?php

namespace Resonance\Laravel\Facades;

use Illuminate\Support\Facades\Facade;
use Resonance\Laravel\SocketManager;

/**
 * @method static \Resonance\Laravel\Sockets\SocketRoute route(string $path, string $handler)
 * @method static \Resonance\Laravel\Sockets\SocketRoute[] routes()
 * @method static void broadcast(string $room, mixed $data, mixed $except = null)
 * @method static void toUser(mixed $userId, mixed $data)
 * @method static void emit(mixed $socket, mixed $data)
 * @method static void join(mixed $socket, string $room)
 * @method static void leave(mixed $socket, string $room)
 * @method static void close(mixed $socket, int $code = 1000, string $reason = '')
 * @method static void actions(mixed $socket, array $actions)
 *
 * @see \Resonance\Laravel\SocketManager
 */
class Socket extends Facade
{
    protected static function getFacadeAccessor()
    {
        return SocketManager::class;
    }
}

<?php

namespace Resonance\Laravel\Sockets;

/**
 * Base class of a socket handler (php artisan make:socket Name). Override what you need;
 * handlers are resolved from the container, so constructor injection works.
 *
 *  - onOpen: before the WebSocket is accepted. Return false, abort(401/403) or throw an
 *    AuthorizationException / AuthenticationException to refuse the connection.
 *  - onMessage: each text or binary message, one at a time per connection, in order.
 *  - onClose: once per accepted connection, whoever closed it, after it left its rooms. The
 *    socket is gone: Socket:: calls here go through Resonance's API (the answer to a close
 *    is ignored), and $conn->send()/join()/... have no effect.
 */
abstract class SocketHandler
{
    /** @return bool|void false refuses the connection (403) */
    public function onOpen(Connection $conn)
    {
    }

    public function onMessage(Connection $conn, string $message)
    {
    }

    public function onClose(Connection $conn, int $code, string $reason)
    {
    }
}

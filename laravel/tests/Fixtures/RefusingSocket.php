<?php

namespace Resonance\Laravel\Tests\Fixtures;

use Illuminate\Auth\Access\AuthorizationException;
use Resonance\Laravel\Facades\Socket;
use Resonance\Laravel\Sockets\Connection;
use Resonance\Laravel\Sockets\SocketHandler;

/** ?mode= picks how onOpen answers. */
class RefusingSocket extends SocketHandler
{
    public function onOpen(Connection $conn)
    {
        switch ($conn->query('mode')) {
            case 'false':
                return false;
            case 'policy':
                throw new AuthorizationException('not your room');
            case 'teapot':
                abort(418, 'short and stout');
                // no break
            case 'identify':
                $conn->identify('custom-'.$conn->param('id'));
                $conn->join('extra.'.$conn->param('id'));
                Socket::toUser('7', 'hi seven');
                Socket::emit('other.1', ['x' => 1]);
                Socket::emit($conn, 'me');
                Socket::broadcast('r', 'all');
                Socket::join($conn, 'r2');
                return null;
        }
    }

    public function onMessage(Connection $conn, string $message)
    {
        $conn->send($conn->isBinary() ? 'binary:'.bin2hex($message) : 'text:'.$message.'@'.$conn->ip());
        $conn->sendBinary("\x00\xff");
    }
}

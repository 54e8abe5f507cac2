<?php

namespace App\Sockets;

use Resonance\Laravel\Facades\Socket;
use Resonance\Laravel\Sockets\Connection;
use Resonance\Laravel\Sockets\SocketHandler;

/**
 * The README's chat: rooms by path (/chat-rooms/{id}, joined through the route's rooms),
 * the user from the Laravel session, broadcast to the room except the sender.
 */
class ChatSocket extends SocketHandler
{
    public function onOpen(Connection $conn)
    {
        $user = $conn->user();
        if ($user === null) {
            abort(401, 'log in first');
        }
        $conn->send(['type' => 'welcome', 'user' => $user->name, 'room' => $conn->param('id'), 'socket' => $conn->id()]);
        Socket::broadcast($this->room($conn), ['type' => 'joined', 'user' => $user->name], $conn);
    }

    public function onMessage(Connection $conn, string $message)
    {
        $text = trim($message);
        if ($text === '' || mb_strlen($text) > 500) {
            $conn->send(['type' => 'error', 'message' => 'a message has 1 to 500 characters']);

            return;
        }
        if ($text === '/quit') {
            $conn->close(4000, 'bye');

            return;
        }
        $user = $conn->user();
        Socket::broadcast($this->room($conn), ['type' => 'message', 'user' => $user ? $user->name : null, 'text' => $text], $conn);
        $conn->send(['type' => 'sent', 'text' => $text]);
    }

    public function onClose(Connection $conn, int $code, string $reason)
    {
        $user = $conn->user();
        Socket::broadcast($this->room($conn), ['type' => 'left', 'user' => $user ? $user->name : null]);
    }

    private function room(Connection $conn): string
    {
        return 'chat-rooms.'.$conn->param('id');
    }
}

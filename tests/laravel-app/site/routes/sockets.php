<?php

use App\Sockets\ChatSocket;
use Resonance\Laravel\Facades\Socket;

Socket::route('/chat-rooms/{id}', ChatSocket::class)->rooms(['chat-rooms.{id}']);

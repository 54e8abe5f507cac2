<?php

namespace Resonance\Laravel\Tests;

use PHPUnit\Framework\TestCase as Base;
use Resonance\Laravel\SocketManager;
use Resonance\Laravel\Sockets\Connection;

class SocketManagerTest extends Base
{
    private function manager(): array
    {
        $client = new RecordingClient();

        return [new SocketManager(function () use ($client) {
            return $client;
        }), $client];
    }

    public function testOutsideAHandlerEverythingGoesThroughTheApi(): void
    {
        [$sockets, $client] = $this->manager();
        $other = new Connection('9.9', '/x');
        $sockets->broadcast('chat/1', ['a' => 1], [$other, '8.8']);
        $sockets->broadcast('plain', 'text');
        $sockets->toUser(42, 'hi');
        $sockets->emit('1.1', ['b' => 2]);
        $sockets->join('1.1', 'r');
        $sockets->leave($other, 'r');
        $sockets->close('1.1', 4001, 'kicked');
        $sockets->actions('1.1', [['send' => 'x']]);
        $this->assertSame([
            ['/rooms/chat%2F1/broadcast', ['data' => ['a' => 1], 'except' => ['9.9', '8.8']]],
            ['/rooms/plain/broadcast', ['data' => 'text']],
            ['/users/42/send', ['data' => 'hi']],
            ['/sockets/1.1/send', ['data' => ['b' => 2]]],
            ['/sockets/1.1/join', ['room' => 'r']],
            ['/sockets/9.9/leave', ['room' => 'r']],
            ['/sockets/1.1/close', ['code' => 4001, 'reason' => 'kicked']],
            ['/sockets/1.1/actions', ['actions' => [['send' => 'x']]]],
        ], $client->calls);
    }

    public function testInsideAHandlerCallTheyBecomeActions(): void
    {
        [$sockets, $client] = $this->manager();
        $conn = new Connection('1.1', '/x');
        $sockets->handling($conn, function () use ($sockets, $conn) {
            $sockets->broadcast('room', 'a', $conn);
            $sockets->broadcast('room', 'b', '1.1');
            $sockets->broadcast('room', 'c');
            $sockets->toUser('u', 'd');
            $sockets->emit('2.2', 'e');
            $sockets->emit($conn, 'f');
            $sockets->join($conn, 'r');
            $sockets->close($conn, 4000, 'bye');
            // excluding another socket needs the API's except list
            $sockets->broadcast('room', 'g', ['1.1', '3.3']);
            // join/leave of another socket: the API
            $sockets->join('2.2', 'r');
        });
        $this->assertSame([
            ['broadcast' => ['room' => 'room', 'data' => 'a', 'except_self' => true]],
            ['broadcast' => ['room' => 'room', 'data' => 'b', 'except_self' => true]],
            ['broadcast' => ['room' => 'room', 'data' => 'c', 'except_self' => false]],
            ['to_user' => ['user_id' => 'u', 'data' => 'd']],
            ['to_socket' => ['socket_id' => '2.2', 'data' => 'e']],
            ['send' => 'f'],
            ['join' => 'r'],
            ['close' => ['code' => 4000, 'reason' => 'bye']],
        ], $conn->actions());
        $this->assertSame([
            ['/rooms/room/broadcast', ['data' => 'g', 'except' => ['1.1', '3.3']]],
            ['/sockets/2.2/join', ['room' => 'r']],
        ], $client->calls);
        $this->assertNull($sockets->current(), 'the handler context ends with the call');
    }

    public function testTheContextEndsEvenWhenTheHandlerThrows(): void
    {
        [$sockets] = $this->manager();
        try {
            $sockets->handling(new Connection('1.1', '/x'), function () {
                throw new \RuntimeException('boom');
            });
        } catch (\RuntimeException $e) {
            $this->assertSame('boom', $e->getMessage());
        }
        $this->assertNull($sockets->current());
    }
}

<?php

namespace Resonance\Laravel\Tests;

use InvalidArgumentException;
use PHPUnit\Framework\TestCase as Base;
use Resonance\Laravel\Sockets\SocketRoute;

class SocketRouteTest extends Base
{
    public function testTomlEntry(): void
    {
        $route = (new SocketRoute('/chat-rooms/{id}', 'App\\Sockets\\ChatSocket'))
            ->rooms(['chat-rooms.{id}', 'lobby'])
            ->events(['connect', 'close'])
            ->timeout(3);
        $this->assertSame(
            "[[routes]]\n"
            ."path = \"/chat-rooms/{id}\"\n"
            ."handler = \"https://app.test/resonance/socket?route=%2Fchat-rooms%2F%7Bid%7D\"\n"
            ."rooms = [\"chat-rooms.{id}\", \"lobby\"]\n"
            ."app = \"100000\"\n"
            ."events = [\"connect\", \"close\"]\n"
            ."timeout = 3\n",
            $route->toToml('https://app.test/', '/resonance/socket', '100000')
        );
    }

    public function testMinimalEntryAndEscaping(): void
    {
        $route = (new SocketRoute('/x', 'H'))->rooms(["we\"ird\\room"]);
        $this->assertSame(
            "[[routes]]\npath = \"/x\"\nhandler = \"http://a/h?route=%2Fx\"\nrooms = [\"we\\\"ird\\\\room\"]\n",
            $route->toToml('http://a', 'h')
        );
    }

    public function testBadRoutesAreRefused(): void
    {
        foreach (['', 'chat', '/a b', '/a"b'] as $path) {
            try {
                new SocketRoute($path, 'H');
                $this->fail("accepted path \"$path\"");
            } catch (InvalidArgumentException $e) {
                $this->assertStringContainsString('path', $e->getMessage());
            }
        }
        $this->expectException(InvalidArgumentException::class);
        (new SocketRoute('/x', 'H'))->events(['open']);
    }
}

<?php

namespace Resonance\Laravel\Tests;

use Illuminate\Contracts\Http\Kernel as HttpKernel;
use Illuminate\Http\Request;
use Resonance\Laravel\Facades\Socket;
use Resonance\Laravel\SocketManager;
use Resonance\Laravel\Tests\Fixtures\RefusingSocket;

/** The handler endpoint (POST /resonance/socket) against the site's ChatSocket and fixtures. */
class SocketEndpointTest extends TestCase
{
    private function connect(array $extra = []): array
    {
        return array_merge([
            'event' => 'connect',
            'socket_id' => 'sock-1',
            'path' => '/chat-rooms/7',
            'params' => ['id' => '7'],
            'query' => [],
            'headers' => ['origin' => 'http://localhost', 'user-agent' => 'phpunit'],
        ], $extra);
    }

    public function testUnsignedAndForgedCallsAreRefused(): void
    {
        $this->login('alice@example.com');
        $body = $this->connect();
        $this->assertSame(401, $this->handlerCall($body, '/chat-rooms/{id}', '')->getStatusCode(), 'no signature');
        $this->assertSame(401, $this->handlerCall($body, '/chat-rooms/{id}', hash_hmac('sha256', json_encode($body), 'wrong'))->getStatusCode(), 'signed with another secret');
        $forged = $this->handlerCall($body, '/chat-rooms/{id}', str_repeat('0', 64));
        $this->assertSame(401, $forged->getStatusCode());
        $this->assertStringContainsString('X-Resonance-Signature', $forged->getContent());
    }

    public function testMalformedCallsAndUnknownRoutes(): void
    {
        $this->assertSame(400, $this->handlerCall(['no' => 'event'])->getStatusCode());
        $this->assertSame(400, $this->handlerCall($this->connect(['event' => 'explode']))->getStatusCode());
        $missing = $this->handlerCall($this->connect(), '/nowhere/{id}');
        $this->assertSame(404, $missing->getStatusCode());
        $this->assertStringContainsString('routes/sockets.php', $missing->getContent());
    }

    public function testGuestIsRefusedWith401(): void
    {
        $this->call('GET', '/login'); // a session, nobody logged in
        $response = $this->handlerCall($this->connect());
        $this->assertSame(401, $response->getStatusCode());
        $this->assertSame('log in first', $this->json($response)['message']);
    }

    public function testConnectResolvesTheSessionUserAndAnswersActions(): void
    {
        $this->login('alice@example.com');
        $response = $this->handlerCall($this->connect());
        $this->assertSame(200, $response->getStatusCode(), $response->getContent());
        $this->assertSame([
            'actions' => [
                ['send' => ['type' => 'welcome', 'user' => 'Alice', 'room' => '7', 'socket' => 'sock-1']],
                ['broadcast' => ['room' => 'chat-rooms.7', 'data' => ['type' => 'joined', 'user' => 'Alice'], 'except_self' => true]],
            ],
            'user_id' => '1',
        ], $this->json($response));
    }

    public function testAForgedSessionCookieIsAGuest(): void
    {
        $this->login('bob@example.com');
        foreach ($this->cookies as $name => $value) {
            $this->cookies[$name] = substr($value, 0, -4).'AAAA';
        }
        $this->assertSame(401, $this->handlerCall($this->connect())->getStatusCode());
    }

    public function testAfterLogoutTheSameCookieIsAGuest(): void
    {
        $this->login('bob@example.com');
        $this->assertSame(200, $this->handlerCall($this->connect())->getStatusCode());
        $old = $this->cookies;
        $this->call('POST', '/logout', [], ['X-CSRF-TOKEN' => $this->csrf]);
        $this->cookies = $old; // a socket opened before the logout still sends the old cookie
        $this->assertSame(401, $this->handlerCall($this->connect())->getStatusCode());
    }

    public function testHandlerCallsDoNotWriteTheSession(): void
    {
        $this->login('alice@example.com');
        $files = glob($this->storage.'/framework/sessions/*');
        $this->assertCount(1, $files);
        $before = [filemtime($files[0]), file_get_contents($files[0])];
        clearstatcache();
        $this->handlerCall($this->connect());
        $this->handlerCall(['event' => 'message', 'socket_id' => 'sock-1', 'user_id' => '1', 'path' => '/chat-rooms/7', 'params' => ['id' => '7'], 'data' => 'hi']);
        clearstatcache();
        $this->assertSame($files, glob($this->storage.'/framework/sessions/*'), 'no new session');
        $this->assertSame($before, [filemtime($files[0]), file_get_contents($files[0])], 'the session file is untouched');
    }

    public function testMessageBroadcastsExceptTheSenderAndAnswersTheSender(): void
    {
        $this->login('alice@example.com');
        $message = ['event' => 'message', 'socket_id' => 'sock-1', 'user_id' => '1', 'path' => '/chat-rooms/7', 'params' => ['id' => '7'], 'data' => '  hello  '];
        $this->assertSame(['actions' => [
            ['broadcast' => ['room' => 'chat-rooms.7', 'data' => ['type' => 'message', 'user' => 'Alice', 'text' => 'hello'], 'except_self' => true]],
            ['send' => ['type' => 'sent', 'text' => 'hello']],
        ]], $this->json($this->handlerCall($message)));

        $message['data'] = str_repeat('x', 501);
        $this->assertSame(['actions' => [['send' => ['type' => 'error', 'message' => 'a message has 1 to 500 characters']]]], $this->json($this->handlerCall($message)));

        $message['data'] = '/quit';
        $this->assertSame(['actions' => [['close' => ['code' => 4000, 'reason' => 'bye']]]], $this->json($this->handlerCall($message)));
    }

    public function testCloseBroadcastsToTheRoomThroughTheApi(): void
    {
        $this->login('carol@example.com');
        $app = $this->app();
        $client = new RecordingClient();
        $app->make(SocketManager::class)->useClient($client);
        $json = json_encode(['event' => 'close', 'socket_id' => 'sock-1', 'user_id' => '3', 'path' => '/chat-rooms/9', 'params' => ['id' => '9'], 'code' => 1001, 'reason' => '']);
        $request = Request::create('/resonance/socket?route='.rawurlencode('/chat-rooms/{id}'), 'POST', [], $this->cookies, [], [
            'HTTP_X_RESONANCE_SIGNATURE' => hash_hmac('sha256', $json, self::SECRET),
            'HTTP_COOKIE' => $this->cookieHeader(),
            'CONTENT_TYPE' => 'application/json',
        ], $json);
        $response = $app->make(HttpKernel::class)->handle($request);
        $this->assertSame(200, $response->getStatusCode(), $response->getContent());
        $this->assertSame(['actions' => []], json_decode($response->getContent(), true), 'a close answer is ignored by Resonance: no actions');
        $this->assertSame([['/rooms/chat-rooms.9/broadcast', ['data' => ['type' => 'left', 'user' => 'Carol']]]], $client->calls, 'the room hears it through the API');
    }

    /** Routes registered at runtime, as routes/sockets.php would. */
    private function withRefusingRoute(array $body): array
    {
        $app = $this->app();
        $json = json_encode($body);
        $request = \Illuminate\Http\Request::create('/resonance/socket?route='.rawurlencode('/refuse/{id}'), 'POST', [], [], [], [
            'HTTP_X_RESONANCE_SIGNATURE' => hash_hmac('sha256', $json, self::SECRET),
            'HTTP_X_FORWARDED_FOR' => '198.51.100.4, 10.0.0.1',
            'CONTENT_TYPE' => 'application/json',
        ], $json);
        Socket::route('/refuse/{id}', RefusingSocket::class);
        $response = $app->make(\Illuminate\Contracts\Http\Kernel::class)->handle($request);

        return [$response->getStatusCode(), json_decode($response->getContent(), true)];
    }

    public function testOnOpenRefusals(): void
    {
        $base = ['event' => 'connect', 'socket_id' => 's9', 'path' => '/refuse/5', 'params' => ['id' => '5']];
        $this->assertSame(403, $this->withRefusingRoute($base + ['query' => ['mode' => 'false']])[0], 'return false');
        [$status, $body] = $this->withRefusingRoute($base + ['query' => ['mode' => 'policy']]);
        $this->assertSame([403, 'not your room'], [$status, $body['message']], 'AuthorizationException');
        [$status, $body] = $this->withRefusingRoute($base + ['query' => ['mode' => 'teapot']]);
        $this->assertSame([418, 'short and stout'], [$status, $body['message']], 'abort(418)');
        [$status, $body] = $this->withRefusingRoute($base + ['query' => []]);
        $this->assertSame([200, ['actions' => []]], [$status, $body], 'a guest, no user_id');
    }

    public function testActionsInsideAHandlerCall(): void
    {
        [$status, $body] = $this->withRefusingRoute(['event' => 'connect', 'socket_id' => 's9', 'path' => '/refuse/5', 'params' => ['id' => '5'], 'query' => ['mode' => 'identify']]);
        $this->assertSame(200, $status);
        $this->assertSame([
            'actions' => [
                ['join' => 'extra.5'],
                ['to_user' => ['user_id' => '7', 'data' => 'hi seven']],
                ['to_socket' => ['socket_id' => 'other.1', 'data' => ['x' => 1]]],
                ['send' => 'me'],
                ['broadcast' => ['room' => 'r', 'data' => 'all', 'except_self' => false]],
                ['join' => 'r2'],
            ],
            'user_id' => 'custom-5',
        ], $body);
    }

    public function testBinaryMessages(): void
    {
        $base = ['event' => 'message', 'socket_id' => 's9', 'path' => '/refuse/5', 'params' => ['id' => '5'], 'user_id' => null];
        [$status, $body] = $this->withRefusingRoute($base + ['data' => base64_encode("\x01\x02"), 'binary' => true]);
        $this->assertSame([200, ['actions' => [['send' => 'binary:0102'], ['send_binary' => base64_encode("\x00\xff")]]]], [$status, $body]);
        [$status] = $this->withRefusingRoute($base + ['data' => '***', 'binary' => true]);
        $this->assertSame(400, $status, 'binary data that is not base64');
        [, $body] = $this->withRefusingRoute($base + ['data' => 'plain']);
        $this->assertSame(['send' => 'text:plain@198.51.100.4'], $body['actions'][0], 'ip(): the first X-Forwarded-For address');
    }
}

<?php

namespace Resonance\Laravel\Tests;

use Illuminate\Contracts\Http\Kernel as HttpKernel;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Cache;
use Illuminate\Support\Facades\Event;
use Resonance\Laravel\Events\CacheMiss;
use Resonance\Laravel\Events\ChannelOccupied;
use Resonance\Laravel\Events\ChannelVacated;
use Resonance\Laravel\Events\ClientEventReceived;
use Resonance\Laravel\Events\MemberAdded;
use Resonance\Laravel\Events\MemberRemoved;
use Resonance\Laravel\Events\SubscriptionCount;
use Resonance\Laravel\Events\WebhookReceived;

/** POST /resonance/webhooks: Pusher-format webhooks → Laravel events. */
class WebhookTest extends TestCase
{
    private function hook(array $events, array $headers = null, ?string $body = null): array
    {
        $app = $this->app();
        $seen = [];
        Event::listen('Resonance\\Laravel\\Events\\*', function ($name, $payload) use (&$seen) {
            $seen[] = $payload[0];
        });
        $body = $body ?? json_encode(['time_ms' => 1700000000123, 'events' => $events]);
        $headers = $headers ?? ['X-Pusher-Key' => self::KEY, 'X-Pusher-Signature' => hash_hmac('sha256', $body, self::SECRET)];
        $server = ['CONTENT_TYPE' => 'application/json', 'HTTP_ACCEPT' => 'application/json'];
        foreach ($headers as $k => $v) {
            $server['HTTP_'.strtoupper(str_replace('-', '_', $k))] = $v;
        }
        $response = $app->make(HttpKernel::class)->handle(Request::create('/resonance/webhooks', 'POST', [], [], [], $server, $body));

        return [$response->getStatusCode(), json_decode($response->getContent(), true), $seen];
    }

    public function testEveryEventBecomesALaravelEvent(): void
    {
        [$status, $answer, $seen] = $this->hook([
            ['name' => 'channel_occupied', 'channel' => 'presence-chat.1'],
            ['name' => 'member_added', 'channel' => 'presence-chat.1', 'user_id' => '2'],
            ['name' => 'client_event', 'channel' => 'private-doc.1', 'event' => 'client-typing', 'data' => '{"on":true}', 'socket_id' => '1.2', 'user_id' => '2'],
            ['name' => 'subscription_count', 'channel' => 'news', 'subscription_count' => 12],
            ['name' => 'cache_miss', 'channel' => 'cache-prices'],
            ['name' => 'member_removed', 'channel' => 'presence-chat.1', 'user_id' => '2'],
            ['name' => 'channel_vacated', 'channel' => 'presence-chat.1'],
            ['name' => 'something_new', 'channel' => 'x'],
        ]);
        $this->assertSame([200, ['dispatched' => 8]], [$status, $answer]);
        $typed = array_values(array_filter($seen, function ($e) {
            return ! $e instanceof WebhookReceived;
        }));
        $this->assertSame(
            [ChannelOccupied::class, MemberAdded::class, ClientEventReceived::class, SubscriptionCount::class, CacheMiss::class, MemberRemoved::class, ChannelVacated::class],
            array_map('get_class', $typed)
        );
        $this->assertCount(8, array_filter($seen, function ($e) {
            return $e instanceof WebhookReceived;
        }), 'WebhookReceived for every event, unknown names included');
        [$occupied, $added, $client, $count] = $typed;
        $this->assertSame(['presence-chat.1', 1700000000123], [$occupied->channel, $occupied->timeMs]);
        $this->assertSame('2', $added->userId);
        $this->assertSame(['private-doc.1', 'client-typing', '{"on":true}', ['on' => true], '1.2', '2'], [$client->channel, $client->event, $client->data, $client->json(), $client->socketId, $client->userId]);
        $this->assertSame(12, $count->subscriptionCount);
    }

    public function testMemberRemovedMarksTheUserOffline(): void
    {
        $this->hook([['name' => 'member_added', 'channel' => 'presence-chat.lobby', 'user_id' => '3']]);
        $this->assertTrue(Cache::get('online.3'), 'MemberAdded listener: online');
        $this->hook([['name' => 'member_removed', 'channel' => 'presence-chat.lobby', 'user_id' => '3']]);
        $this->assertFalse(Cache::get('online.3'), 'MemberRemoved listener: offline');
    }

    public function testRefusals(): void
    {
        $events = [['name' => 'member_removed', 'channel' => 'presence-chat.lobby', 'user_id' => '3']];
        $body = json_encode(['time_ms' => 1, 'events' => $events]);
        [$status, , $seen] = $this->hook($events, ['X-Pusher-Key' => self::KEY, 'X-Pusher-Signature' => hash_hmac('sha256', $body, 'not-the-secret')]);
        $this->assertSame([401, []], [$status, $seen], 'bad signature: nothing dispatched');
        [$status] = $this->hook($events, ['X-Pusher-Key' => self::KEY]);
        $this->assertSame(401, $status, 'no signature');
        [$status] = $this->hook($events, ['X-Pusher-Key' => 'another-app', 'X-Pusher-Signature' => hash_hmac('sha256', $body, self::SECRET)]);
        $this->assertSame(401, $status, "another app's key");
        [$status] = $this->hook([], ['X-Pusher-Signature' => hash_hmac('sha256', $body, self::SECRET)], $body.' ');
        $this->assertSame(401, $status, 'signed for another body');
        [$status] = $this->hook([], null, 'not json');
        $this->assertSame(400, $status, 'signed, but not JSON');
        $bad = '{"events": "nope"}';
        [$status] = $this->hook([], ['X-Pusher-Key' => self::KEY, 'X-Pusher-Signature' => hash_hmac('sha256', $bad, self::SECRET)], $bad);
        $this->assertSame(400, $status, 'signed, but not a webhook');
        $many = json_encode(['events' => array_fill(0, 1001, ['name' => 'cache_miss', 'channel' => 'c'])]);
        [$status, , $seen] = $this->hook([], ['X-Pusher-Signature' => hash_hmac('sha256', $many, self::SECRET)], $many);
        $this->assertSame([413, []], [$status, $seen], 'too many events');
    }
}

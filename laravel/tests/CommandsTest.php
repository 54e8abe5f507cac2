<?php

namespace Resonance\Laravel\Tests;

use Illuminate\Filesystem\Filesystem;

/**
 * The artisan commands, run as a developer runs them: `php artisan ...` in a copy of the
 * application (they write files into it).
 */
class CommandsTest extends TestCase
{
    /** @var string */
    private $site;

    protected function setUp(): void
    {
        parent::setUp();
        $this->site = $this->storage.'/site';
        (new Filesystem())->copyDirectory(RESONANCE_TEST_SITE, $this->site);
        @unlink($this->site.'/.env');
        @unlink($this->site.'/config/resonance.php');
    }

    private function artisan(string $args, array $env = []): array
    {
        $env += [
            'RESONANCE_PACKAGE_SRC' => dirname(__DIR__).'/src',
            'APP_STORAGE' => $this->storage,
            'RESONANCE_APP_ID' => '',
            'RESONANCE_APP_KEY' => '',
            'RESONANCE_APP_SECRET' => '',
        ];
        $prefix = '';
        foreach ($env as $k => $v) {
            $prefix .= $k.'='.escapeshellarg($v).' ';
        }
        exec('cd '.escapeshellarg($this->site).' && env '.$prefix.'php artisan '.$args.' 2>&1', $out, $code);

        return [$code, implode("\n", $out)];
    }

    public function testRoutesPrintsTheTomlEntries(): void
    {
        [$code, $out] = $this->artisan('resonance:routes --url=http://app.internal:8000', ['RESONANCE_APP_ID' => '100000']);
        $this->assertSame(0, $code, $out);
        $this->assertStringContainsString(
            "[[routes]]\npath = \"/chat-rooms/{id}\"\nhandler = \"http://app.internal:8000/resonance/socket?route=%2Fchat-rooms%2F%7Bid%7D\"\nrooms = [\"chat-rooms.{id}\"]\napp = \"100000\"",
            $out
        );
        file_put_contents($this->site.'/routes/sockets.php', "<?php\n");
        [$code, $out] = $this->artisan('resonance:routes');
        $this->assertSame(1, $code);
        $this->assertStringContainsString('No socket routes', $out);
    }

    public function testMakeSocketGeneratesAHandler(): void
    {
        [$code, $out] = $this->artisan('make:socket LobbySocket');
        $this->assertSame(0, $code, $out);
        $file = $this->site.'/app/Sockets/LobbySocket.php';
        $this->assertFileExists($file);
        $source = file_get_contents($file);
        $this->assertStringContainsString("namespace App\\Sockets;", $source);
        $this->assertStringContainsString('class LobbySocket extends SocketHandler', $source);
        foreach (['onOpen(Connection $conn)', 'onMessage(Connection $conn, string $message)', 'onClose(Connection $conn, int $code, string $reason)'] as $method) {
            $this->assertStringContainsString($method, $source);
        }
        exec('php -l '.escapeshellarg($file).' 2>&1', $lint, $lintCode);
        $this->assertSame(0, $lintCode, implode("\n", $lint));
        [$code, $out] = $this->artisan('make:socket LobbySocket');
        $this->assertStringContainsString('already exists', $out);
    }

    public function testInstallWritesConfigEnvAndRoutesAndPrintsEcho(): void
    {
        unlink($this->site.'/routes/sockets.php');
        file_put_contents($this->site.'/.env', "APP_NAME=Laravel\nBROADCAST_DRIVER=log\n");
        [$code, $out] = $this->artisan('resonance:install --broadcaster=redis');
        $this->assertSame(0, $code, $out);
        $this->assertFileEquals(dirname(__DIR__).'/config/resonance.php', $this->site.'/config/resonance.php');
        $this->assertStringContainsString('Socket::route(', file_get_contents($this->site.'/routes/sockets.php'));
        $env = file_get_contents($this->site.'/.env');
        $this->assertMatchesRegularExpression('/^RESONANCE_APP_ID=\d{6}$/m', $env);
        $this->assertMatchesRegularExpression('/^RESONANCE_APP_KEY=[0-9a-f]{20}$/m', $env);
        $this->assertMatchesRegularExpression('/^RESONANCE_APP_SECRET=[0-9a-f]{32}$/m', $env);
        $this->assertStringContainsString("BROADCAST_DRIVER=redis\n", $env, 'the broadcaster replaced in place (Laravel 8: BROADCAST_DRIVER)');
        $this->assertStringNotContainsString('BROADCAST_DRIVER=log', $env);
        $this->assertStringContainsString("broadcaster: 'socket.io'", $out);
        $this->assertStringContainsString('RESONANCE_REDIS_PREFIX=laravel_database_', $out);
        $this->assertStringContainsString('RESONANCE_AUTH_ENDPOINT=', $out);

        // again: the keys stay, nothing is duplicated
        preg_match('/^RESONANCE_APP_SECRET=(.*)$/m', $env, $secret);
        [$code, $out] = $this->artisan('resonance:install --broadcaster=pusher');
        $this->assertSame(0, $code, $out);
        $env2 = file_get_contents($this->site.'/.env');
        $this->assertSame(1, substr_count($env2, 'RESONANCE_APP_SECRET='));
        $this->assertStringContainsString('RESONANCE_APP_SECRET='.$secret[1], $env2);
        $this->assertStringContainsString("BROADCAST_DRIVER=pusher\n", $env2);
        $this->assertStringContainsString('PUSHER_APP_KEY=${RESONANCE_APP_KEY}', $env2);
        $this->assertStringContainsString("broadcaster: 'pusher'", $out);
        $this->assertStringContainsString('kept', $out, 'existing files are kept without --force');

        [$code, $out] = $this->artisan('resonance:install --broadcaster=nonsense');
        $this->assertSame(1, $code);
        $this->assertStringContainsString('Unknown broadcaster', $out);
    }

    public function testInstallRefusesReverbBeforeLaravel11(): void
    {
        [$code, $out] = $this->artisan('resonance:install --broadcaster=reverb');
        $this->assertSame(1, $code, $out);
        $this->assertStringContainsString('Laravel 11', $out);
        $this->assertFileDoesNotExist($this->site.'/.env');
    }
}

<?php

namespace Resonance\Laravel\Console;

use Illuminate\Console\GeneratorCommand;

/** php artisan make:socket ChatSocket → app/Sockets/ChatSocket.php */
class MakeSocketCommand extends GeneratorCommand
{
    protected $name = 'make:socket';

    protected $description = 'Create a Resonance socket handler class (onOpen / onMessage / onClose)';

    protected $type = 'Socket handler';

    protected function getStub()
    {
        return __DIR__.'/../../stubs/socket.stub';
    }

    protected function getDefaultNamespace($rootNamespace)
    {
        return $rootNamespace.'\\Sockets';
    }
}
